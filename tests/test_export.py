"""`acceltune export` and the ONNX/TensorRT backends, on tiny random models (CPU, about 30 s)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import SAMPLE_TEXTS

from acceltune.errors import UserError
from acceltune.export import export_model
from acceltune.export.parity import ParityData, check_parity, torch_reference
from acceltune.inference.backends.base import Outputs
from acceltune.inference.heads import WithFeatures
from acceltune.inference.predictor import Predictor

TEXTS = SAMPLE_TEXTS


def torch_logits(model_dir: Path, texts) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return np.concatenate([model(**tok([t], return_tensors="pt")).logits.numpy() for t in texts])


def test_fp32_export_matches_torch(tiny_model_dir, onnx_dir):
    info = json.loads((onnx_dir / "acceltune.json").read_text())
    assert info["format"] == "onnx" and info["extra"]["file"] == "model.onnx"
    assert info["extra"]["quantization"] == "none" and info["extra"]["opset"] >= 18
    assert info["extra"]["optimization"]["fused_operators"].get("Attention") == 2  # both layers fused
    assert info["extra"]["parity"]["max_abs_logit_diff"] <= 1e-3
    for f in ("model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (onnx_dir / f).is_file(), f
    assert not (onnx_dir / "model.safetensors").exists()  # self-contained, without the torch weights
    got, _ = Predictor(onnx_dir).logits(TEXTS)  # padded, length-sorted batches
    ref = torch_logits(tiny_model_dir, TEXTS)  # one text at a time, unpadded
    assert got.dtype == np.float32
    assert np.abs(got - ref).max() <= 1e-3


def test_int8_export_and_agreement_check(tiny_model_dir, int8_dir):
    info = json.loads((int8_dir / "acceltune.json").read_text())
    assert info["extra"]["file"] == "model_int8.onnx" and info["extra"]["quantization"] == "int8"
    assert info["extra"]["parity"]["label_agreement"] >= 0.99
    assert (int8_dir / "model_int8.onnx").stat().st_size < (tiny_model_dir / "model.safetensors").stat().st_size
    labels = [r["label"] for r in Predictor(int8_dir).predict(TEXTS)]
    assert labels == [r["label"] for r in Predictor(tiny_model_dir).predict(TEXTS)]


def negated(run):
    """A reference whose logits disagree everywhere (features unchanged)."""
    def skewed(batch):
        out = run(batch)
        return Outputs(-out.logits, out.features)

    return skewed


def test_parity_check_fails_loudly_and_writes_nothing(tiny_model_dir, tmp_path, monkeypatch):
    import acceltune.export.exporter as ex

    real = ex.torch_reference
    monkeypatch.setattr(ex, "torch_reference", lambda model: negated(real(model)))
    out = tmp_path / "bad"
    with pytest.raises(UserError, match="parity check failed"):
        export_model(tiny_model_dir, out, log=lambda m: None)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir()]  # no temporary directory left behind either


def reference(model_dir: Path):
    from transformers import AutoModelForSequenceClassification

    return torch_reference(WithFeatures(AutoModelForSequenceClassification.from_pretrained(model_dir)).eval())


def test_check_parity_reports_agreement(int8_dir, tiny_model_dir):
    ref = reference(tiny_model_dir)
    ok = check_parity(ref, int8_dir, TEXTS, "int8", "onnx")
    assert ok["passed"] and ok["label_agreement"] == 1.0 and ok["texts"] == len(TEXTS)
    flipped = check_parity(negated(ref), int8_dir, TEXTS, "int8", "onnx")
    assert not flipped["passed"] and flipped["label_agreement"] < 0.99


@pytest.mark.parametrize("backend_dir", ["torch", "onnx", "int8"])
def test_batch_vs_alone(backend_dir, tiny_model_dir, onnx_dir, int8_dir):
    model_dir = {"torch": tiny_model_dir, "onnx": onnx_dir, "int8": int8_dir}[backend_dir]
    pred = Predictor(model_dir, device="cpu")
    together = pred.predict(TEXTS, top_k=3)
    for text, batched in zip(TEXTS, together):
        alone = pred.predict([text], top_k=3)[0]
        assert alone["label"] == batched["label"]
        tol = 2e-2 if backend_dir == "int8" else 1e-4  # int8: activations are quantized per batch
        assert alone["score"] == pytest.approx(batched["score"], abs=tol)


def test_parity_texts_from_a_named_column(tiny_model_dir, tmp_path):
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("review,stars\n" + "".join(f'"{t}",5\n' for t in TEXTS))
    result = export_model(tiny_model_dir, tmp_path / "out", parity_data=reviews, text_column="review", log=lambda m: None)
    assert result.parity["passed"] and result.parity["texts"] == len(TEXTS)


def test_gpt2_style_model_exports_with_plain_ort_optimisation(tiny_gpt2_model_dir, tmp_path):
    out = tmp_path / "gpt2"
    result = export_model(tiny_gpt2_model_dir, out, log=lambda m: None)
    assert result.optimization["method"] == "onnxruntime graph optimisation"
    assert result.parity["max_abs_logit_diff"] <= 1e-3
    pred = Predictor(out)
    assert pred.backend.input_names == ("input_ids", "attention_mask")
    together = pred.logits(TEXTS)[0]
    alone = np.concatenate([pred.logits([t])[0] for t in TEXTS])
    assert np.abs(together - alone).max() <= 1e-4


def test_cli_export_writes_directory_and_refuses_overwrite(tiny_model_dir, tmp_path, capsys):
    from acceltune.cli import main

    out = tmp_path / "cli_out"
    parity = tmp_path / "parity.txt"
    parity.write_text("\n".join(TEXTS) + "\n")
    args = ["export", str(tiny_model_dir), "--format", "onnx", "--output", str(out), "--parity-data", str(parity)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "parity" in printed and "passed" in printed
    assert (out / "model.onnx").is_file() and (out / "acceltune.json").is_file()
    before = (out / "model.onnx").stat().st_mtime_ns

    assert main(args) == 2  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model.onnx").stat().st_mtime_ns == before

    assert main(args + ["--overwrite", "--quantize", "int8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["quantization"] == "int8" and result["parity"]["passed"]
    assert sorted(p.name for p in out.iterdir()) == sorted(result["files"])
    assert not (out / "model.onnx").exists() and (out / "model_int8.onnx").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unavailable_backends_are_user_errors(tiny_model_dir, onnx_dir, tmp_path, capsys):
    from acceltune.cli import main

    with pytest.raises(UserError, match="export"):
        Predictor(tiny_model_dir, backend="onnx")  # not an export
    with pytest.raises(UserError):
        Predictor(onnx_dir, backend="tensorrt")  # onnx export, and no GPU here
    with pytest.raises(UserError, match="needs a trained model directory"):
        Predictor(onnx_dir, backend="torch")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(UserError, match="onnxruntime-gpu"):
            Predictor(onnx_dir, backend="onnx", device="cuda")
    import torch

    if not torch.cuda.is_available():
        out = tmp_path / "trt"
        assert main(["export", str(tiny_model_dir), "--format", "tensorrt", "--output", str(out)]) == 2
        assert "GPU" in capsys.readouterr().err
        assert not out.exists()
        fake = tmp_path / "fake_trt"
        shutil.copytree(onnx_dir, fake)
        info = json.loads((fake / "acceltune.json").read_text())
        info["format"] = "tensorrt"
        (fake / "acceltune.json").write_text(json.dumps(info))
        with pytest.raises(UserError, match="GPU"):
            Predictor(fake)  # auto -> tensorrt backend -> no GPU


def test_bad_requests_are_user_errors(tiny_model_dir, onnx_dir, tmp_path):
    with pytest.raises(UserError, match="already an onnx export"):
        export_model(onnx_dir, tmp_path / "again", log=lambda m: None)
    with pytest.raises(UserError, match="--quantize"):
        export_model(tiny_model_dir, tmp_path / "x", quantize="int4", log=lambda m: None)
    with pytest.raises(UserError, match="opset"):
        export_model(tiny_model_dir, tmp_path / "x", opset=13, log=lambda m: None)
    with pytest.raises(UserError, match="model directory itself"):
        export_model(tiny_model_dir, tiny_model_dir, overwrite=True, log=lambda m: None)
    with pytest.raises(UserError, match="no such file"):
        export_model(tiny_model_dir, tmp_path / "x", parity_data=tmp_path / "missing.csv", log=lambda m: None)
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("review,stars\n" + "".join(f"{t},5\n" for t in TEXTS))
    with pytest.raises(UserError, match="--text-column"):  # no recognised text column: the error names the fix
        export_model(tiny_model_dir, tmp_path / "x", parity_data=reviews, log=lambda m: None)
    assert not (tmp_path / "x").exists()
