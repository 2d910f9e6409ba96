"""The inference loop (BatchRunner), pooled features on every backend, old exports, and int8 judged by accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import SAMPLE_TEXTS

from acceltune.errors import UserError
from acceltune.export import export_model
from acceltune.inference.predictor import Predictor

TEXTS = [*SAMPLE_TEXTS, "", "café naïve – ünïcode ✓"]  # an empty text and non-ASCII as well


@pytest.fixture(scope="module")
def torch_predictor(tiny_model_dir) -> Predictor:
    return Predictor(tiny_model_dir, backend="torch", device="cpu")


def torch_pooled(model_dir: Path, texts, pairs=None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and BERT's pooler output (the classifier's input), one text at a time, unpadded, with plain transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    logits, pooled = [], []
    with torch.inference_mode():
        for i, t in enumerate(texts):
            enc = tok(t, pairs[i], return_tensors="pt") if pairs else tok(t, return_tensors="pt")
            logits.append(model(**enc).logits.numpy())
            pooled.append(model.bert(**enc).pooler_output.numpy())
    return np.concatenate(logits), np.concatenate(pooled)


# ------------------------------------------------------------------------------------- the loop


@pytest.mark.parametrize("pairs", [False, True])
def test_encoding_matches_the_transformers_tokenizer(torch_predictor, pairs):
    runner = torch_predictor.runner
    second = list(reversed(TEXTS)) if pairs else None
    runner.max_length = 12  # some inputs are truncated: those take the transformers path
    try:
        enc = runner.encode(TEXTS, second)
        args = (TEXTS, second) if pairs else (TEXTS,)
        ref = torch_predictor.tokenizer(*args, truncation=True, max_length=12)
        full = torch_predictor.tokenizer(*args)
    finally:
        runner.max_length = torch_predictor.info.max_length
    for i in range(len(TEXTS)):
        ids = enc.input_ids[enc.starts[i]:enc.starts[i] + enc.lengths[i]].tolist()
        types = enc.token_type_ids[enc.starts[i]:enc.starts[i] + enc.lengths[i]].tolist()
        assert ids == ref["input_ids"][i] and types == ref["token_type_ids"][i]
        assert enc.truncated[i] == (len(full["input_ids"][i]) > 12)
    assert any(enc.truncated) and not all(enc.truncated)


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batches_match_the_tokenizers_padding(torch_predictor, side):
    import copy

    runner = copy.copy(torch_predictor.runner)
    runner.left = side == "left"
    runner.pad_to_multiple_of = 8
    enc = runner.encode(TEXTS)
    idx = np.array([1, 4, 0])
    batch = runner.pad(enc, idx)
    tok = copy.deepcopy(torch_predictor.tokenizer)
    tok.padding_side = side
    ref = tok([TEXTS[i] for i in idx], padding=True, pad_to_multiple_of=8, return_tensors="np")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(batch[key], ref[key], err_msg=key)


def test_run_returns_outputs_in_input_order_within_the_budget(torch_predictor):
    runner = torch_predictor.runner
    enc = runner.encode(TEXTS)
    seen, shapes = [], []

    def run(batch):  # each row's first token id and its length: enough to tell rows apart
        shapes.append(batch["input_ids"].shape)
        lengths = batch["attention_mask"].sum(1)
        seen.append(len(lengths))
        return lengths[:, None].astype(np.float32), None

    old = runner.max_batch_tokens
    runner.max_batch_tokens = 40
    try:
        lengths, none = runner.run(enc, run)
    finally:
        runner.max_batch_tokens = old
    assert none is None and len(seen) > 1 and sum(seen) == len(TEXTS)
    assert all(b * s <= 40 for b, s in shapes)
    np.testing.assert_array_equal(lengths[:, 0], enc.lengths)


def test_results_are_the_documented_dicts(torch_predictor):
    probs = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]], dtype=np.float32)
    got = torch_predictor.results(probs, [False, True], top_k=2)
    labels = torch_predictor.labels
    assert got[0] == {"label": labels[1], "score": float(np.float32(0.5)),
                      "top_k": [{"label": labels[1], "score": float(np.float32(0.5))},
                                {"label": labels[2], "score": float(np.float32(0.3))}], "truncated": False}
    assert got[1]["label"] == labels[0] and got[1]["top_k"][1]["label"] == labels[1]  # ties: the first label wins
    assert got[1]["truncated"] is True and isinstance(got[0]["score"], float)
    assert torch_predictor.format_result(probs[1], True, 2) == got[1]
    assert torch_predictor.predict([]) == []


# --------------------------------------------------------------------------------------- features


def test_torch_features_are_the_heads_input(tiny_model_dir, torch_predictor):
    logits, pooled = torch_pooled(tiny_model_dir, TEXTS)
    out, _ = torch_predictor.outputs(TEXTS)  # padded, length-sorted batches
    np.testing.assert_allclose(out.logits, logits, atol=1e-4)
    np.testing.assert_allclose(out.features, pooled, atol=1e-4)
    emb = torch_predictor.embed(TEXTS)
    assert emb.dtype == np.float32 and emb.shape == (len(TEXTS), 32)
    assert torch_predictor.embed([]).shape == (0, 32)


def test_gpt2_features_are_taken_at_the_pooled_token(tiny_gpt2_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = [t for t in TEXTS[:6] if len(t) < 40]  # within max_length with this small BPE vocabulary
    pred = Predictor(tiny_gpt2_model_dir, backend="torch", device="cpu")
    out, truncated = pred.outputs(texts)
    assert not any(truncated)
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_gpt2_model_dir).eval()
    with torch.inference_mode():
        for i, t in enumerate(texts):
            hidden = model.transformer(**tok(t, return_tensors="pt")).last_hidden_state[0, -1]
            np.testing.assert_allclose(out.features[i], hidden.numpy(), atol=1e-4)
            np.testing.assert_allclose(out.logits[i], model.score(hidden).numpy(), atol=1e-4)


def test_onnx_exports_carry_features_matching_torch(tiny_model_dir, onnx_dir, int8_dir, torch_predictor):
    ref, _ = torch_predictor.outputs(TEXTS)
    info = json.loads((onnx_dir / "acceltune.json").read_text())
    assert info["extra"]["outputs"] == ["logits", "features"]
    assert info["extra"]["parity"]["max_abs_feature_diff"] <= 1e-3
    fp32, _ = Predictor(onnx_dir).outputs(TEXTS)
    np.testing.assert_allclose(fp32.logits, ref.logits, atol=1e-3)
    np.testing.assert_allclose(fp32.features, ref.features, atol=1e-3)
    int8 = Predictor(int8_dir).embed(TEXTS)
    cosine = np.sum(int8 * ref.features, 1) / (np.linalg.norm(int8, axis=1) * np.linalg.norm(ref.features, axis=1))
    assert cosine.min() > 0.95 and 0 < np.abs(int8 - ref.features).max() < 0.5  # quantized: close, not equal


def test_exports_made_before_features_still_predict(tiny_model_dir, onnx_dir, tmp_path):
    import onnx

    old = tmp_path / "old_export"
    shutil.copytree(onnx_dir, old)
    graph = onnx.load(str(old / "model.onnx"))
    names = [o.name for o in graph.graph.output]
    del graph.graph.output[names.index("features")]  # what exports wrote before this change
    onnx.save(graph, str(old / "model.onnx"))
    pred = Predictor(old)
    assert not pred.backend.has_features
    assert [r["label"] for r in pred.predict(TEXTS)] == [r["label"] for r in Predictor(onnx_dir).predict(TEXTS)]
    with pytest.raises(UserError, match="run 'acceltune export' again"):
        pred.embed(TEXTS)


def test_onnx_threads_are_a_parameter(onnx_dir, monkeypatch):
    monkeypatch.setenv("ACCELTUNE_THREADS", "7")  # the library reads no environment
    assert Predictor(onnx_dir, device="cpu").backend.threads != 7
    assert Predictor(onnx_dir, device="cpu", threads=1).backend.threads == 1


# ------------------------------------------------------------------------------- int8 judgement


def _negated_reference(monkeypatch):
    """Make the export's torch reference disagree with int8 on every label (features unchanged)."""
    import acceltune.export.exporter as ex
    from acceltune.inference.backends.base import Outputs

    real = ex.torch_reference

    def reference(model):
        run = real(model)
        return lambda batch: Outputs(-run(batch).logits * 10, run(batch).features)

    monkeypatch.setattr(ex, "torch_reference", reference)


def test_int8_without_labels_is_judged_on_confident_predictions(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from acceltune.cli import main

    parity = tmp_path / "parity.txt"
    parity.write_text("\n".join(t for t in TEXTS if t) + "\n")
    _negated_reference(monkeypatch)
    out = tmp_path / "int8"
    args = ["export", str(tiny_model_dir), "--quantize", "int8", "--output", str(out), "--parity-data", str(parity)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing was written" in err and "--min-agreement 0" in err
    assert not out.exists()
    assert main(args + ["--min-agreement", "0"]) == 0  # the flag the message names lets it through
    assert json.loads((out / "acceltune.json").read_text())["extra"]["parity"]["confident_agreement"] == 0.0


def test_int8_with_labels_is_judged_by_accuracy(tiny_model_dir, int8_dir, tmp_path, monkeypatch, capsys):
    from acceltune.cli import main

    pred = Predictor(int8_dir)
    texts = [t for t in TEXTS if t] * 4
    labelled = tmp_path / "labelled.csv"
    predicted = [r["label"] for r in pred.predict(texts)]
    # Gold = int8's own labels: fp32 agrees with int8 on this model, so both are right everywhere.
    import csv
    import re

    with open(labelled, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, predicted))
    out = tmp_path / "ok"
    assert main(["export", str(tiny_model_dir), "--quantize", "int8", "--output", str(out), "--parity-data", str(labelled)]) == 0
    parity = json.loads((out / "acceltune.json").read_text())["extra"]["parity"]
    assert parity["accuracy"] == parity["reference_accuracy"] == 1.0 and parity["labelled_texts"] == len(texts)
    assert parity["criterion"].startswith("int8 accuracy within")

    _negated_reference(monkeypatch)  # fp32 now "right" nowhere the int8 model is: accuracy decides, not agreement
    bad = tmp_path / "bad"
    args = ["export", str(tiny_model_dir), "--quantize", "int8", "--output", str(bad), "--parity-data", str(labelled)]
    assert main(args) == 0  # the negated reference is wrong everywhere: int8 gains accuracy, so it passes
    shutil.rmtree(bad)
    with open(labelled, "w", newline="") as f:  # gold = the negated reference's labels: int8 loses them all
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, [pred.labels[int(np.argmin(p))] for p in pred.logits(texts)[0]]))
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "int8 accuracy" in err and "nothing was written" in err
    suggested = re.search(r"--max-accuracy-drop ([\d.]+)$", err).group(1)
    assert float(suggested) > 50
    assert main(args + ["--max-accuracy-drop", suggested]) == 0  # the value the message names lets it through


def test_int8_flags_are_checked(tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="--quantize int8"):
        export_model(tiny_model_dir, tmp_path / "x", min_agreement=0.9, log=lambda m: None)
    with pytest.raises(UserError, match="between 0 and 1"):
        export_model(tiny_model_dir, tmp_path / "x", quantize="int8", min_agreement=98, log=lambda m: None)
    plain = tmp_path / "plain.txt"
    plain.write_text("one text\nanother text\n")
    with pytest.raises(UserError, match="needs labelled parity data"):
        export_model(tiny_model_dir, tmp_path / "x", quantize="int8", max_accuracy_drop=1, parity_data=plain, log=lambda m: None)
    assert not (tmp_path / "x").exists()
