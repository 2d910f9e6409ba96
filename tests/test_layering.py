"""The package's layering, read from the source: the core never imports an application, an application
imports only the core's public modules, and no application imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "acceltune"
APPLICATIONS = ("assistant", "monitor", "recommend")
# What an application may import from the core: the public API and the shared server and storage stacks.
PUBLIC = {"acceltune", "acceltune.serve", "acceltune.storage", "acceltune.extras", "acceltune.errors"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m == "acceltune" or m.startswith("acceltune.")}


def _application(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in APPLICATIONS else None


def _modules():
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def test_the_core_never_imports_an_application():
    offenders = [f"{p.relative_to(SRC)} imports {m}" for p in _modules() if p.relative_to(SRC).parts[0] not in APPLICATIONS
                 for m in _imports(p) if _application(m)]
    assert offenders == []


@pytest.mark.parametrize("app", APPLICATIONS)
def test_an_application_uses_only_the_public_api(app):
    files = [p for p in _modules() if p.relative_to(SRC).parts[0] == app]
    offenders = [f"{p.relative_to(SRC)} imports {m}" for p in files for m in _imports(p)
                 if _application(m) != app and m not in PUBLIC]
    assert offenders == []

