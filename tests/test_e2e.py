"""End-to-end CLI runs with the real packaged model (all-MiniLM-L6-v2) on small subsets."""

from __future__ import annotations

import json

import pytest

from helpers import SHARED_DATA, run_cli

pytestmark = pytest.mark.slow


def test_default_train_on_the_demo_data_then_predict_and_evaluate(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("train", "--output-dir", out, "--max-examples", "160", "--epochs", "3", "--batch-size", "16",
                "--learning-rate", "2e-4")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test: accuracy" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["examples"] == 100
    assert metrics["test"]["accuracy"] > 0.5, "10 classes: chance is 0.1"
    assert metrics["model"] == "minilm"
    # The model directory works with predict (stdin, one text per line) and evaluate.
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "acceltune", "predict", str(out), "--input", "-"], capture_output=True,
                       text=True, input="where is my parcel\nI want to speak to a human\n", timeout=300)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert len(rows) == 2 and all(0 < row["score"] <= 1 for row in rows)


@pytest.mark.skipif(not (SHARED_DATA / "financial_phrasebank").is_dir(), reason="../shared/data is absent (CI has it)")
def test_financial_phrasebank_original_file_trains_and_reports_the_bad_line(tmp_path):
    out = tmp_path / "fpb"
    r = run_cli("train", "--train", SHARED_DATA / "financial_phrasebank" / "Sentences_AllAgree.txt", "--delimiter", "@",
                "--encoding", "latin-1", "--column-names", "text,label", "--output-dir", out, "--max-examples", "300",
                "--max-steps", "10", "--batch-size", "16")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "38" in r.stderr and "bad line" in r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["examples"] == 227
    assert set(json.loads((out / "acceltune.json").read_text())["labels"]) == {"negative", "neutral", "positive"}
