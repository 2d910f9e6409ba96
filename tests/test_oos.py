"""Out-of-scope detection: thresholds per goal, each score by hand, the rule through train / evaluate /
predict / export, and torch against int8 ONNX on the decisions (tiny random models)."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import SAMPLE_TEXTS, WORDS, run_cli

from acceltune.errors import UserError
from acceltune.inference.backends.base import Outputs
from acceltune.inference.predictor import Predictor
from acceltune.modeldir import ModelInfo
from acceltune.oos import Goal, parse_goal
from acceltune.oos.calibration import best_recall_at, oos_metrics, sweep, threshold_for_goal
from acceltune.oos.rule import Calibration, OOSRule, evaluate_rule, fit_rule
from acceltune.oos.scores import KNN, Energy, FitData, Mahalanobis, MSPTemperature

OOS_KEYS = ("in_scope_accuracy", "oos_precision", "oos_recall", "oos_f1", "oos_auroc")


# ------------------------------------------------------------------------------------- calibration


def test_in_scope_recall_goal_keeps_exactly_that_share_and_catches_the_most():
    in_scores = np.arange(100, dtype=float)  # 0..99
    oos_scores = np.array([50.5, 95.5, 120.0])
    t = threshold_for_goal(in_scores, oos_scores, Goal("in_scope_recall", 0.9))
    assert t == pytest.approx(89.5)  # 10 in-scope scores above it: recall exactly 0.90
    assert (in_scores <= t).mean() == pytest.approx(0.90)
    # One step lower would reject an eleventh in-scope message.
    assert (in_scores <= 88.5).mean() < 0.9
    assert (oos_scores > t).sum() == 2


def test_oos_recall_goal_is_the_highest_threshold_that_catches_enough():
    in_scores = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    oos_scores = np.array([4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 11.0, 12.0, 13.0, 14.0])
    t = threshold_for_goal(in_scores, oos_scores, Goal("oos_recall", 0.8))
    assert (oos_scores > t).mean() >= 0.8
    assert t == pytest.approx(5.5)  # between the 8th largest out-of-scope score (6) and the next lower score (5)
    assert (oos_scores > 6.0).mean() < 0.8  # any higher threshold misses the goal
    # Unreachable recall: everything above the lowest score is rejected.
    assert threshold_for_goal(in_scores, oos_scores, Goal("oos_recall", 0.99)) < 0.0 or (oos_scores > 0).all()


def test_forced_messages_count_toward_the_goal():
    # Two in-scope messages already rejected because the model chose the out-of-scope class: a 10% budget of
    # 20 in-scope messages leaves no room for a score rejection.
    in_scores = np.arange(20, dtype=float)
    forced = np.zeros(20, bool)
    forced[[3, 7]] = True
    t = threshold_for_goal(in_scores, np.array([30.0]), Goal("in_scope_recall", 0.9), forced, np.zeros(1, bool))
    assert ((in_scores > t) | forced).mean() == pytest.approx(0.1)
    # Two already caught out of 4: oos_recall=0.5 asks for no score rejection at all.
    t = threshold_for_goal(np.array([0.0, 1.0]), np.array([5.0, 6.0, 7.0, 8.0]), Goal("oos_recall", 0.5),
                           np.zeros(2, bool), np.array([True, True, False, False]))
    assert t > 8.0


def test_goal_grammar():
    assert parse_goal("in_scope_recall=0.97") == Goal("in_scope_recall", 0.97)
    assert parse_goal("oos_recall=0.9") == Goal("oos_recall", 0.9)
    assert parse_goal("none") is None
    for bad in ("recall=0.9", "oos_recall=1.5", "in_scope_recall", "oos_recall=x"):
        with pytest.raises(UserError, match="--oos-goal"):
            parse_goal(bad)


def test_metrics_by_hand_and_the_sweep():
    true_oos = np.array([False, False, False, False, True, True])
    correct = np.array([True, True, False, True, False, False])
    flags = np.array([False, True, False, False, True, False])
    scores = np.array([0.1, 0.9, 0.2, 0.3, 0.8, 0.25])
    m = oos_metrics(true_oos, correct, flags, scores)
    assert m["in_scope_accuracy"] == pytest.approx(2 / 4)  # rows 0 and 3 (row 1 rejected, row 2 wrong)
    assert m["oos_precision"] == pytest.approx(1 / 2) and m["oos_recall"] == pytest.approx(1 / 2)
    assert m["oos_f1"] == pytest.approx(0.5)
    assert m["oos_auroc"] == pytest.approx(5 / 8)  # out-of-scope 0.8 beats 3 of 4, 0.25 beats 2 of 4
    curve = sweep(scores, true_oos, correct, np.zeros(6, bool))
    # Catching 0.25 needs a threshold under it, which also rejects the correct 0.3: accuracy 1/4.
    assert best_recall_at(curve, 0.5) == {"oos_recall": 0.5, "in_scope_accuracy": 0.5, "threshold": 0.3}
    assert best_recall_at(curve, 0.25)["oos_recall"] == 1.0


# ------------------------------------------------------------------------------------------ scores


def test_each_score_as_by_hand():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)) * 3
    in_scope = np.array([0, 1, 3])  # class 2 is the out-of-scope label: its column takes no part
    z = logits[:, in_scope]
    energy = Energy(in_scope, {}, {}).score(logits, None)
    assert np.allclose(energy, -np.log(np.exp(z).sum(1)))
    msp = MSPTemperature(in_scope, {"temperature": 2.0}, {}).score(logits, None)
    e = np.exp(z / 2.0)
    assert np.allclose(msp, -(e / e.sum(1, keepdims=True)).max(1))

    train_x = rng.normal(size=(60, 6))
    train_y = np.repeat(in_scope, 20)
    train_x[train_y == 1] += 3.0
    x = rng.normal(size=(5, 6))
    fit = FitData(in_scope, train_x, train_y, logits, np.array([0, 1, 2, 0, 1]))
    maha = Mahalanobis.fit(fit)
    # By hand: class means, Ledoit-Wolf's shrunk covariance of the centred features, then each distance.
    from sklearn.covariance import ledoit_wolf_shrinkage

    means = np.stack([train_x[train_y == c].mean(0) for c in in_scope])
    centred = train_x - means[np.searchsorted(in_scope, train_y)]
    s = centred.T @ centred / len(centred)
    shrink = ledoit_wolf_shrinkage(centred, assume_centered=True)
    cov = (1 - shrink) * s + shrink * np.trace(s) / 6 * np.eye(6)
    values, vectors = np.linalg.eigh(cov)
    floor = maha.params["variance_floor"] * values.mean()
    cov = cov + vectors @ np.diag(np.maximum(floor - values, 0.0)) @ vectors.T  # no direction below the floor
    inv = np.linalg.inv(cov)
    expected = [min((xi - m) @ inv @ (xi - m) for m in means) for xi in x]
    assert np.allclose(maha.score(None, x), expected, rtol=1e-6)

    knn = KNN.fit(fit, k=3)
    unit = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    for xi, got in zip(x, knn.score(None, x)):
        sims = np.sort(unit @ (xi / np.linalg.norm(xi)))[::-1]
        assert got == pytest.approx(1 - sims[2], abs=1e-5)


def test_temperature_minimises_validation_nll():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + 4.0 * np.eye(3)[labels]  # over-confident on a noisy task
    t = MSPTemperature.fit(FitData(np.arange(3), None, labels, logits, labels)).params["temperature"]

    def nll(temp):
        z = logits / temp
        z = z - z.max(1, keepdims=True)
        return -(z[np.arange(200), labels] - np.log(np.exp(z).sum(1))).mean()

    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 2000))
    assert nll(t) <= min(nll(g) for g in grid) + 1e-6


def synthetic_calibration(n_classes=3, seed=0):
    """Features that separate out-of-scope messages, logits that do not: only the feature scores see them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 8)) * 4

    def split(n_in, n_oos):
        y = rng.integers(0, n_classes, n_in)
        f_in = centres[y] + rng.normal(size=(n_in, 8))
        f_oos = rng.normal(size=(n_oos, 8)) * 0.5 + 12.0
        logits = np.concatenate([np.eye(n_classes)[y] * 2 + rng.normal(size=(n_in, n_classes)) * 0.3,
                                 np.eye(n_classes)[rng.integers(0, n_classes, n_oos)] * 2 + rng.normal(size=(n_oos, n_classes)) * 0.3])
        feats = np.concatenate([f_in, f_oos]).astype(np.float32)
        return Outputs(logits.astype(np.float32), feats), np.concatenate([y, np.full(n_oos, n_classes)])

    train, train_y = split(300, 0)
    val, val_y = split(120, 40)
    test, test_y = split(120, 40)
    return Calibration(train, train_y, val, val_y), (test, test_y)


def test_auto_picks_the_score_that_wins_on_validation_and_meets_the_goal():
    data, (test, test_y) = synthetic_calibration()
    labels = ["a", "b", "c"]  # the out-of-scope label is not a class: its rows carry index 3
    rule = fit_rule(data, labels, "oos", None)  # validation has out-of-scope rows: default goal
    aurocs = rule.validation["auroc_by_score"]
    assert set(aurocs) == {"msp_temperature", "energy", "mahalanobis", "knn"}
    assert rule.score == max(aurocs, key=aurocs.get) and rule.score in ("mahalanobis", "knn")
    assert aurocs[rule.score] > aurocs["energy"]
    assert rule.goal == "in_scope_recall=0.95" and rule.validation["in_scope_recall"] >= 0.95
    m = evaluate_rule(rule, test, test_y)
    assert set(OOS_KEYS) <= set(m) and m["oos_recall"] > 0.9
    # Chosen by the user: no comparison decides, the goal is the user's.
    chosen = fit_rule(data, labels, "oos", "oos_recall=0.5", "energy")
    assert chosen.score == "energy" and chosen.validation["oos_recall"] >= 0.5


def test_without_out_of_scope_examples_a_rule_needs_a_goal():
    data, _ = synthetic_calibration()
    inside = data.validation_labels < 3
    no_oos = Calibration(data.train, data.train_labels, Outputs(data.validation.logits[inside], data.validation.features[inside]),
                         data.validation_labels[inside])
    assert fit_rule(no_oos, ["a", "b", "c"], "oos", None) is None
    rule = fit_rule(no_oos, ["a", "b", "c"], "oos", "in_scope_recall=0.9")
    assert rule.validation["chosen_by"].startswith("default") and rule.validation["in_scope_recall"] == pytest.approx(0.9, abs=0.01)
    with pytest.raises(UserError, match="needs out-of-scope examples"):
        fit_rule(no_oos, ["a", "b", "c"], "oos", "oos_recall=0.9")


def test_a_learnt_out_of_scope_class_is_out_of_scope_whatever_the_score():
    rule = OOSRule(score="energy", threshold=1e9, goal="in_scope_recall=0.95", label="oos", label_index=1, num_labels=3)
    logits = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]], np.float32)
    flags, scores = rule.apply(Outputs(logits, None))
    assert flags.tolist() == [False, True]
    assert np.allclose(scores, -np.log(np.exp(logits[:, [0, 2]]).sum(1)))  # its own column left out


def blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_scores_run_on_one_blas_thread_and_the_limit_is_given_back():
    """OpenBLAS threads that spin after the rule's products take the cores of the next model call (acceltune.cpu)."""
    import threading

    from threadpoolctl import threadpool_limits

    seen = []

    class Recording(Energy):
        def score(self, logits, features):
            seen.append(blas_threads())
            return super().score(logits, features)

    rule = OOSRule(score="energy", threshold=0.0, goal="in_scope_recall=0.95", label=None, label_index=None, num_labels=2)
    rule._scorer = Recording(rule.in_scope, {}, {})
    outputs = Outputs(np.zeros((3, 2), np.float32), None)
    with threadpool_limits(limits=2, user_api="blas"):  # a 2-core machine's pool, whatever this one has
        rule.apply(outputs)
        assert seen == [1] and blas_threads() == 2

    before = blas_threads()
    batch_worker = threading.Thread(target=rule.apply, args=(outputs,))  # as the server's batch threads call it
    batch_worker.start()
    batch_worker.join()
    assert seen == [1, 1] and blas_threads() == before


# --------------------------------------------------------------------------------- model directories


def attach_rule(model_dir: Path, texts: list[str]) -> OOSRule:
    """A Mahalanobis rule fitted on the model's own outputs (classes = its predictions), with the threshold in the
    widest gap between the scores of ``texts`` near their median: decisions robust to int8's small drift."""
    pred = Predictor(model_dir, backend="torch")
    outputs, _ = pred.outputs(texts)
    classes = outputs.logits.argmax(1)
    n = len(pred.labels)
    maha = Mahalanobis.fit(FitData(np.arange(n), outputs.features, classes, outputs.logits, classes))
    s = np.sort(maha.score(outputs.logits, outputs.features))
    mid = range(len(s) // 4, 3 * len(s) // 4)
    i = max(mid, key=lambda j: s[j + 1] - s[j])
    rule = OOSRule(score="mahalanobis", threshold=float((s[i] + s[i + 1]) / 2), goal="in_scope_recall=0.5", label="oos",
                   label_index=None, num_labels=n, arrays=maha.arrays)
    rule.save(model_dir)
    info = ModelInfo.load(model_dir)
    info.oos = rule.to_json()
    info.save(model_dir)
    return rule


def varied_texts(n=40, seed=3) -> list[str]:
    rng = random.Random(seed)
    vocab = [w for ws in WORDS.values() for w in ws] + ["card", "transfer", "pizza", "volcano", "chess"]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 9))) for _ in range(n)] + list(SAMPLE_TEXTS)


def content_sensitive_copy(tiny_model_dir: Path, path: Path) -> Path:
    """The tiny random model with its attention values and pooler scaled up. As initialised, every text gets nearly
    the same pooled features (their spread across texts is below int8's drift), which no real model does; scaled,
    the spread is 15-45x the drift, as in a trained model."""
    import torch
    from transformers import BertForSequenceClassification

    shutil.copytree(tiny_model_dir, path)
    model = BertForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.self.value.weight.mul_(10.0)
            layer.attention.output.dense.weight.mul_(10.0)
        model.bert.pooler.dense.weight.mul_(10.0)
    model.save_pretrained(path)
    return path


def test_torch_and_int8_onnx_agree_on_oos_decisions(tiny_model_dir, tmp_path):
    from acceltune.export import export_model

    model = content_sensitive_copy(tiny_model_dir, tmp_path / "model")
    texts = varied_texts()
    attach_rule(model, texts)
    out = tmp_path / "int8"
    export_model(model, out, quantize="int8", parity_data=None, min_agreement=0.0, log=lambda m: None)
    assert (out / "oos.npz").is_file() and ModelInfo.load(out).oos == ModelInfo.load(model).oos
    torch_results = Predictor(model).predict(texts)
    int8_results = Predictor(out).predict(texts)
    flags = [r["oos"] for r in torch_results]
    assert 0 < sum(flags) < len(flags)  # a rule that decides something
    assert [r["oos"] for r in int8_results] == flags
    assert np.allclose([r["oos_score"] for r in int8_results], [r["oos_score"] for r in torch_results], rtol=0.2, atol=0.5)
    assert "oos_agreement" in json.loads((out / "acceltune.json").read_text())["extra"]["parity"]
    # The same decisions from features a caller already has: no second forward pass.
    pred = Predictor(out)
    outputs, _ = pred.outputs(texts)
    assert pred.oos(outputs)[0].tolist() == flags


def test_a_model_without_a_rule_keeps_its_results_and_refuses_oos(tiny_model_dir):
    pred = Predictor(tiny_model_dir)
    assert "oos" not in pred.predict(["ok"])[0]
    with pytest.raises(UserError, match="no out-of-scope rule"):
        pred.oos(pred.outputs(["ok"])[0])


# ------------------------------------------------------------------------------------------ the CLI


def write_intents_csv(path: Path, n_per_class=24, seed=0) -> Path:
    rng = random.Random(seed)
    other = ["weather", "football", "pizza", "guitar", "volcano", "poetry", "mountain", "chess"]
    rows = [(" ".join(rng.choice(words) for _ in range(rng.randint(2, 8))), label)
            for label, words in list(WORDS.items()) + [("oos", other)] for _ in range(n_per_class)]
    rng.shuffle(rows)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def test_train_with_an_oos_label_end_to_end(tiny_model_dir, tmp_path):
    data = write_intents_csv(tmp_path / "intents.csv")
    out = tmp_path / "run"
    r = run_cli("train", "--train", data, "--model", tiny_model_dir, "--output-dir", out, "--max-steps", "6",
                "--batch-size", "16", "--learning-rate", "2e-3", "--no-freeze-embeddings", "--max-length", "16",
                "--oos-goal", "in_scope_recall=0.9")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((out / "acceltune.json").read_text())
    assert "oos" in info["labels"]  # in the training data: also learnt as a class
    rule = info["oos"]
    assert rule["goal"] == "in_scope_recall=0.9" and rule["label_index"] == info["labels"].index("oos")
    assert set(rule["validation"]["auroc_by_score"]) == {"msp_temperature", "energy", "mahalanobis", "knn"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(OOS_KEYS) <= set(metrics["test"]) and metrics["oos"]["learnt_as_class"] is True
    assert "oos_tradeoff.png" in (out / "report.md").read_text() and (out / "oos_tradeoff.png").is_file()

    r = run_cli("predict", out, "--input", data)
    assert r.returncode == 0, r.stderr[-2000:]
    first = json.loads(r.stdout.splitlines()[0])
    assert isinstance(first["oos"], bool) and isinstance(first["oos_score"], float)

    r = run_cli("evaluate", out, "--data", data, "--output-dir", tmp_path / "eval")
    assert r.returncode == 0, r.stderr[-2000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    assert set(OOS_KEYS) <= set(evaluated) and evaluated["oos_examples"] == 24
    assert "in-scope accuracy" in r.stdout

    r = run_cli("train", "--train", data, "--model", tiny_model_dir, "--output-dir", tmp_path / "bad", "--oos-goal", "recall=2")
    assert r.returncode == 2 and "--oos-goal" in r.stderr and "Traceback" not in r.stderr


def test_classify_answers_carry_the_rule_decisions(tiny_model_dir, tmp_path):
    import asyncio

    from test_serve import serving, settings

    from acceltune.serve.schemas import ClassifyResponse

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    rule = attach_rule(model, varied_texts())
    predictor = Predictor(model)
    texts = varied_texts(8, seed=5)

    async def main():
        async with serving(settings(model), predictor) as c:
            return (await c.post("/v1/classify", json={"inputs": texts, "top_k": 2})).json(), (await c.get("/v1/model")).json()

    body, described = asyncio.run(main())
    want = predictor.predict(texts, top_k=2)
    assert [(r["oos"], r["oos_score"]) for r in body["results"]] == [(w["oos"], w["oos_score"]) for w in want]
    ClassifyResponse.model_validate(body)  # the documented schema holds the new fields
    assert described["oos"] == {"score": "mahalanobis", "threshold": rule.threshold, "goal": rule.goal, "label": "oos"}
