"""Optional parts of acceltune and the pip extra that installs each: a missing one is a one-line error."""

from __future__ import annotations

import importlib
from types import ModuleType

from acceltune.errors import UserError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise a UserError naming ``pip install 'acceltune[extra]'``.

    Only ImportError counts as "not installed": a module that is present but fails on import for
    another reason keeps its own error."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        if missing.split(".")[0] == "acceltune":  # our own code failed to import: a bug, not a missing extra
            raise
        what = f"{module} is not installed" if missing == module else f"{module} cannot be imported ({missing} is missing)"
        raise UserError(f"{what}: pip install 'acceltune[{extra}]'") from None


def installed_extras() -> dict[str, bool]:
    """Each optional part (an extra in the package metadata, i.e. pyproject.toml) -> whether all its
    packages are installed, counting the extras it names (``assistant`` needs ``serve`` and ``store``).
    ``all`` and the extras built on it (``dev``) are left out: they say nothing about one part."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    try:
        meta = md.metadata("acceltune")
        requirements = [Requirement(r) for r in md.requires("acceltune") or []]
    except md.PackageNotFoundError:  # run from a source tree that was never installed
        return {}
    own: dict[str, list[str]] = {}
    named: dict[str, set[str]] = {}
    for extra in meta.get_all("Provides-Extra") or []:
        wanted = [r for r in requirements if r.marker is not None and r.marker.evaluate({"extra": extra})]
        own[extra] = [r.name for r in wanted if r.name != "acceltune"]
        named[extra] = {e for r in wanted if r.name == "acceltune" for e in r.extras}

    def installed(extra: str) -> bool:
        return all(map(_has_distribution, own.get(extra, []))) and all(map(installed, named.get(extra, ())))

    return {extra: installed(extra) for extra in own if extra != "all" and "all" not in named[extra]}


def _has_distribution(name: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(name)
    except md.PackageNotFoundError:
        return False
    return True
