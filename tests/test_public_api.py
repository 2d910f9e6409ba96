"""The public API: what an application or a notebook imports from `acceltune`."""

from __future__ import annotations

import subprocess
import sys

import pytest

import acceltune


@pytest.mark.parametrize("name", acceltune.__all__)
def test_every_public_name_resolves(name):
    value = getattr(acceltune, name)
    assert value is not None
    if name != "__version__":
        module, _ = acceltune._EXPORTS[name]
        assert getattr(value, "__module__", "").startswith("acceltune."), value
        assert getattr(sys.modules[module], name) is value


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        acceltune.no_such_thing  # noqa: B018


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_import_is_light_and_names_load_on_first_use():
    r = run_python(
        "import sys, acceltune\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'fastapi', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "acceltune.TrainConfig\n"
        "assert 'acceltune.config' in sys.modules and 'torch' not in sys.modules\n"
    )
    assert r.returncode == 0, r.stderr


def test_a_missing_extra_fails_only_where_its_name_is_used():
    r = run_python(
        "import sys\n"
        "sys.modules['fastapi'] = None\n"
        "import acceltune\n"
        "config = acceltune.TrainConfig()\n"
        "try:\n"
        "    acceltune.create_app\n"
        "except acceltune.UserError as e:\n"
        "    print(e)\n"
    )
    assert r.returncode == 0, r.stderr
    assert "pip install 'acceltune[serve]'" in r.stdout and "fastapi" in r.stdout, r.stdout
