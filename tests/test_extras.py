"""Optional parts (pip extras): a missing one is one line naming the pip install that fixes it, exit 2."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from acceltune.cli import main
from acceltune.errors import UserError
from acceltune.extras import require


def assert_one_line(capsys, argv, *fragments):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_require_returns_the_module():
    import json

    assert require("json", "serve") is json


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an install without the extra looks like to import
    with pytest.raises(UserError, match=r"fastapi is not installed: pip install 'acceltune\[serve\]'"):
        require("fastapi", "serve")


def test_require_names_the_missing_dependency_of_a_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    for name in [m for m in sys.modules if m == "acceltune.serve" or m.startswith("acceltune.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(UserError, match=r"acceltune.serve cannot be imported \(fastapi is missing\): pip install 'acceltune\[serve\]'"):
        require("acceltune.serve", "serve")


def test_a_broken_acceltune_module_is_not_reported_as_a_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "acceltune.no_such_part", None)
    with pytest.raises(ImportError):
        require("acceltune.no_such_part", "serve")


def test_serve_without_the_serve_extra(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert_one_line(capsys, ["serve", str(tmp_path)], "uvicorn", "pip install 'acceltune[serve]'")


@pytest.mark.parametrize("module", ["onnx", "onnxscript", "onnxruntime"])
def test_export_without_the_export_extra(capsys, monkeypatch, tmp_path, tiny_model_dir, module):
    monkeypatch.setitem(sys.modules, module, None)
    assert_one_line(capsys, ["export", str(tiny_model_dir), "--output", str(tmp_path / "onnx")],
                    module, "pip install 'acceltune[export]'")
    assert not (tmp_path / "onnx").exists()


def test_cpu_kernels_without_numba(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "acceltune.speedups.kernels", raising=False)
    with pytest.raises(UserError, match=r"pip install 'acceltune\[cpu\]'"):
        import acceltune.speedups.kernels  # noqa: F401


def test_doctor_reports_the_extras_from_the_package_metadata(capsys, monkeypatch):
    import importlib.metadata as md
    import json

    from acceltune.extras import installed_extras

    extras = installed_extras()
    if not extras:
        pytest.skip("acceltune is not installed (no package metadata)")
    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) == set(declared) - {"all", "dev"}  # dev is all + test tools: neither names one part
    assert extras["assistant"] is (extras["serve"] and extras["store"])  # an extra counts the extras it names
    assert extras["serve"] and extras["export"]  # the test tools come with dev, which includes all
    real = md.version
    monkeypatch.setattr(md, "version", lambda name: real("no-such-distribution-x") if name == "numba" else real(name))
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["extras"]["cpu"] is False and report["extras"]["serve"] is True


def test_the_core_trains_and_predicts_without_any_extra(tmp_path, tiny_model_dir):
    """What `pip install acceltune` (no extras) gives: train, then predict with the torch backend."""
    import subprocess

    from helpers import write_labeled_csv

    data = write_labeled_csv(tmp_path / "train.csv", n_per_class=10)
    blocked = ["fastapi", "uvicorn", "onnx", "onnxruntime", "onnxscript", "numba", "tensorboard"]
    run = tmp_path / "run"
    code = (f"import sys\nfor m in {blocked!r}:\n    sys.modules[m] = None\n"
            "from acceltune.cli import main\n"
            f"code = main(['train', '--train', {str(data)!r}, '--model', {str(tiny_model_dir)!r}, '--max-steps', '2',"
            f" '--batch-size', '8', '--output-dir', {str(run)!r}])\n"
            "assert code == 0, code\n"
            f"sys.exit(main(['predict', {str(run)!r}, '--input', {str(data)!r}, '--output', {str(tmp_path / 'p.jsonl')!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pip install 'acceltune[tensorboard]'" in " ".join(r.stderr.split())  # the warning names the extra; training went on
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 30
