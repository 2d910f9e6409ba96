"""User errors: one actionable line on stderr, exit code 2, no traceback; outputs never silently overwritten."""

from __future__ import annotations

import json

import pytest
import torch

from acceltune.cli import main
from helpers import run_cli, write_labeled_csv


def assert_user_error(capsys, argv, *fragments):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    return write_labeled_csv(tmp_path_factory.mktemp("cli") / "train.csv", n_per_class=12)


def test_missing_training_file(capsys, tmp_path):
    assert_user_error(capsys, ["train", "--train", str(tmp_path / "nope.csv"), "--output-dir", str(tmp_path / "o")], "nope.csv")


def test_unknown_column_lists_the_columns(capsys, tmp_path, data_csv):
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--text-column", "txt", "--output-dir", str(tmp_path / "o")],
                      "txt", "text", "label")


def test_unknown_model_path(capsys, tmp_path, data_csv):
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--model", str(tmp_path / "no-model"),
                               "--output-dir", str(tmp_path / "o")], "no-model")


@pytest.mark.parametrize("name", ["bert base", "a/b/c"])
def test_model_name_that_is_neither_a_directory_nor_a_hub_id(capsys, tmp_path, data_csv, name):
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--model", name, "--output-dir", str(tmp_path / "o")],
                      name, "no such directory", "Hub id")


@pytest.mark.parametrize("offline", ["1", "yes", "ON"])
def test_unknown_hub_model_offline(capsys, tmp_path, data_csv, monkeypatch, offline):
    """Every spelling huggingface_hub accepts reads as offline, for models as for data (acceltune.hub)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--model", "acceltune-test/does-not-exist",
                               "--output-dir", str(tmp_path / "o")], "does-not-exist", "--model", "HF_HUB_OFFLINE is set")
    assert_user_error(capsys, ["train", "--train", "someone/some_dataset", "--output-dir", str(tmp_path / "o")],
                      "someone/some_dataset", "HF_HUB_OFFLINE is set")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:"])
def test_unknown_device_spelling(capsys, tmp_path, data_csv, device):
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--device", device, "--output-dir", str(tmp_path / "o")],
                      repr(device), "auto, cpu, cuda or cuda:N")


def test_help_imports_no_ml_library():
    """`acceltune --help` and `acceltune train --help` answer without importing torch or transformers."""
    import subprocess
    import sys

    code = ("import sys\nfrom acceltune.cli import main\n"
            "for argv in (['--help'], ['train', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_asked_for_but_absent(capsys, tmp_path, data_csv):
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--device", "cuda", "--output-dir", str(tmp_path / "o")],
                      "cuda", "--device cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_fp16_on_cpu_is_refused(capsys, tmp_path, data_csv):
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--precision", "fp16", "--output-dir", str(tmp_path / "o")],
                      "fp16")


def test_existing_output_is_not_overwritten(capsys, tmp_path, data_csv):
    out = tmp_path / "o"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--output-dir", str(out)], "--overwrite")
    assert (out / "precious.txt").read_text() == "keep me"


def test_overwrite_refuses_a_directory_that_is_not_a_run(capsys, tmp_path, data_csv):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--output-dir", str(out), "--overwrite"],
                      "refuses to delete")
    assert (out / "thesis.tex").read_text() == "years of work"


def test_resume_without_checkpoint(capsys, tmp_path, data_csv):
    assert_user_error(capsys, ["train", "--train", str(data_csv), "--output-dir", str(tmp_path / "o"), "--resume"], "--resume")


def test_invalid_values(capsys, tmp_path, data_csv):
    assert_user_error(capsys, ["train", "--batch-size", "0"], "--batch-size")
    assert_user_error(capsys, ["train", "--precision", "int4"], "--precision")


def test_yaml_config_and_flag_precedence(capsys, tmp_path, monkeypatch):
    from acceltune.cli import apply_yaml_defaults, build_parser
    from acceltune.commands.train import config_from_args

    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 0.003\nbatch_size: 7\ntrain:\n  epochs: 2\n")
    parser, subs = build_parser("train")
    apply_yaml_defaults(subs["train"], str(cfg))
    args = parser.parse_args(["train", "--config", str(cfg), "--batch-size", "9"])
    config = config_from_args(args)
    assert config.train.learning_rate == 0.003 and config.train.epochs == 2
    assert config.train.batch_size == 9  # the flag wins
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    assert_user_error(capsys, ["train", "--config", str(bad)], "learning_rat")


def test_saved_training_config_loads_back(tmp_path):
    """The grouped YAML saved with every model reads back through the same flattening as --config."""
    from acceltune.config import DataArgs, TrainArgs, TrainConfig

    config = TrainConfig(data=DataArgs(label_column="intent"), train=TrainArgs(batch_size=5, precision="fp32"))
    config.save(tmp_path / "c.yaml")
    assert TrainConfig.load(tmp_path / "c.yaml") == config


def test_flags_from_a_dataclass():
    """The helper behind train's (and serve's) generated flags: types, defaults, help, choices, required."""
    import argparse
    from dataclasses import dataclass, field
    from pathlib import Path

    from acceltune.config import add_dataclass_arguments, dataclass_values

    @dataclass
    class Settings:
        model_dir: Path
        port: int = 8080
        scale: float | None = None
        name: str = field(default="a", metadata={"help": "the name", "choices": ["a", "b"]})
        verbose: bool = True

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, Settings)
    args = parser.parse_args(["--model-dir", "m", "--scale", "0.5", "--no-verbose"])
    assert Settings(**dataclass_values(args, Settings)) == Settings(Path("m"), 8080, 0.5, "a", False)
    assert "the name" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --model-dir has no default: required
    with pytest.raises(SystemExit):
        parser.parse_args(["--model-dir", "m", "--name", "c"])  # not one of the choices

    @dataclass
    class WithTuple:
        keys: tuple[str, ...] = ()

    with pytest.raises(TypeError, match="keys"):
        add_dataclass_arguments(argparse.ArgumentParser(), WithTuple)
    add_dataclass_arguments(argparse.ArgumentParser(), WithTuple, exclude=("keys",))


def test_subprocess_error_has_no_traceback(tmp_path):
    r = run_cli("train", "--train", tmp_path / "missing.csv", "--output-dir", tmp_path / "o")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.startswith("acceltune: error:")


def test_evaluate_rejects_labels_the_model_does_not_know(capsys, tmp_path, tiny_model_dir):
    data = tmp_path / "eval.csv"
    data.write_text("text,label\ngood,positive\nnew kind,surprised\n")
    assert_user_error(capsys, ["evaluate", str(tiny_model_dir), "--data", str(data), "--output-dir", str(tmp_path / "e")],
                      "surprised")


def test_predict_and_evaluate_on_a_model_directory(capsys, tmp_path, tiny_model_dir):
    inp = tmp_path / "in.csv"
    inp.write_text("id,text\n1,short\n2,a somewhat longer text than the first one\n3,mid length text\n")
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(tiny_model_dir), "--input", str(inp), "--output", str(out), "--id-column", "id", "--top-k", "2"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3"]  # ids are copied as read (text)
    assert all(len(r["top_k"]) == 2 and r["label"] == r["top_k"][0]["label"] for r in rows)
    # Same results one at a time (batch composition does not matter).
    from acceltune.inference.predictor import Predictor

    p = Predictor(tiny_model_dir)
    for text, row in zip(["short", "a somewhat longer text than the first one", "mid length text"], rows):
        alone = p.predict([text], top_k=2)[0]
        assert alone["label"] == row["label"] and abs(alone["score"] - row["score"]) < 1e-5
    # Refuses to overwrite; CSV output works.
    capsys.readouterr()
    assert_user_error(capsys, ["predict", str(tiny_model_dir), "--input", str(inp), "--output", str(out)], "--overwrite")
    csv_out = tmp_path / "pred.csv"
    assert main(["predict", str(tiny_model_dir), "--input", str(inp), "--output", str(csv_out)]) == 0
    assert csv_out.read_text().splitlines()[0].startswith("label,score")
    labeled = tmp_path / "labeled.csv"
    labeled.write_text("text,label\ngood,positive\nbad,negative\nfine,neutral\n")
    assert main(["evaluate", str(tiny_model_dir), "--data", str(labeled), "--output-dir", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["test"]["examples"] == 3 and "confusion_matrix" in m["test"]
    assert (tmp_path / "ev" / "report.md").is_file()


@pytest.mark.parametrize("name, content, fragments", [
    ("header-only.csv", b"text,label\n", ("header-only.csv", "no data rows", "below the header")),
    ("header-only.tsv", b"text\tlabel\n", ("header-only.tsv", "no data rows")),
    ("latin.csv", "text,label\ncafé crème,a\nthé,b\n".encode("latin-1"), ("latin.csv", "utf-8", "--encoding latin-1", "line 2")),
    ("latin.jsonl", '{"text": "café", "label": "a"}\n{"text": "thé", "label": "b"}\n'.encode("latin-1"),
     ("latin.jsonl", "UTF-8", "--encoding latin-1")),
])
def test_unreadable_data_is_one_line_naming_the_file_and_the_fix(tmp_path, name, content, fragments):
    """As a user sees it (a subprocess): the datasets library's own log lines must not precede ours."""
    path = tmp_path / name
    path.write_bytes(content)
    r = run_cli("train", "--train", path, "--output-dir", tmp_path / "o")
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("acceltune: error:"), r.stderr
    for fragment in fragments:
        assert fragment in r.stderr, r.stderr
