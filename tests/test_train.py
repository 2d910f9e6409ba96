"""End-to-end training on tiny random models: files written, resume exactness, precision, tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from acceltune.config import DataArgs, ModelArgs, TrainArgs, TrainConfig
from acceltune.errors import UserError
from acceltune.hardware import cpu_has_bf16
from acceltune.training.classification import SequenceClassification
from acceltune.training.loop import TrainingInterrupted, train
from helpers import write_labeled_csv
from test_task import interrupting


def interrupted_at(step: int) -> SequenceClassification:
    """Sequence classification whose run gets a real SIGINT during step ``step``."""
    return interrupting(SequenceClassification, step)()


def tiny_config(data: Path, model: Path, out: Path, freeze_embeddings: bool = True, tokenize: str = "auto",
                **train_kw) -> TrainConfig:
    kw = dict(output_dir=str(out), batch_size=4, learning_rate=5e-4, max_steps=12, log_every=2, seed=7)
    kw.update(train_kw)
    return TrainConfig(data=DataArgs(train=str(data), validation_fraction=0.2, test_fraction=0.2, tokenize=tokenize),
                       model=ModelArgs(model=str(model), max_length=32, freeze_embeddings=freeze_embeddings),
                       train=TrainArgs(**kw))


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    return write_labeled_csv(tmp_path_factory.mktemp("data") / "train.csv", n_per_class=20)


def test_train_writes_a_complete_model_directory(tmp_path, data_csv, tiny_model_dir):
    out = tmp_path / "run"
    result = train(tiny_config(data_csv, tiny_model_dir, out, max_steps=None, epochs=2), quiet=True)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "acceltune.json", "training_config.yaml",
                 "metrics.json", "report.md", "confusion_matrix.png", "training_curves.png", "log.jsonl"):
        assert (out / name).is_file(), name
    assert list((out / "logs").glob("events.out.tfevents.*")), "no TensorBoard event file"
    assert (out / "checkpoints" / "latest").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 1 and metrics["global_steps"] == 18  # 36 examples / batch 4 = 9 steps x 2 epochs
    # Throughput over the optimizer steps only, wall time over the whole call: named apart, and consistent.
    assert 0 < metrics["train_runtime_s"] < metrics["wall_time_s"]
    runtime = metrics["train_runtime_s"]  # rounded to 0.01 s: on a fast machine that alone is a few percent
    assert 72 / (runtime + 0.005) <= metrics["train_samples_per_second"] <= 72 / max(runtime - 0.005, 1e-9)  # 36 x 2 epochs
    assert metrics["test"]["confusion_matrix"] and sum(map(sum, metrics["test"]["confusion_matrix"])) == 12
    assert metrics["test"]["examples"] == 12
    assert metrics["tokenize"] == "upfront"  # 36 training rows: far below --tokenize auto's threshold
    assert result.metrics["test"]["accuracy"] == metrics["test"]["accuracy"]
    # A standard Hugging Face directory: loads as it is, with the label names.
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records}
    assert kinds == {"train", "eval"}
    assert all(r["samples_per_second"] > 0 for r in records if r["kind"] == "train")
    assert [r["step"] for r in records if r["kind"] == "eval"] == [9, 18]  # once per epoch
    # The saved config is the resolved one (reusable as --config), the caller's is unchanged.
    import yaml

    saved = yaml.safe_load((out / "training_config.yaml").read_text())
    assert saved["model"]["max_length"] == 32 and saved["train"]["output_dir"] == str(out)
    assert saved["train"]["head_learning_rate"] == pytest.approx(5e-3)


def test_training_learns_a_separable_task(tmp_path, data_csv, tiny_model_dir):
    # A random tiny model has random word embeddings: let them train here.
    result = train(tiny_config(data_csv, tiny_model_dir, tmp_path / "run", freeze_embeddings=False, max_steps=None,
                               epochs=10, learning_rate=2e-3), quiet=True)
    losses = [h["loss"] for h in json.loads("[" + ",".join((tmp_path / "run" / "log.jsonl").read_text().splitlines()) + "]") if h["kind"] == "train"]
    assert losses[-1] < losses[0] * 0.7
    assert result.metrics["test"]["accuracy"] >= 0.75  # chance is 1/3 on three balanced classes


@pytest.mark.parametrize("accumulation,tokenize", [(1, "upfront"), (2, "upfront"), (1, "lazy")])
def test_interrupted_and_resumed_run_ends_with_identical_weights(tmp_path, data_csv, tiny_model_dir, accumulation, tokenize):
    # 36 training examples / batch 4 = 9 batches per epoch: the interruption lands mid-epoch, the run spans epochs.
    common = dict(max_steps=14 if accumulation == 1 else 8, save_every=5, eval_every=4, grad_accumulation=accumulation)
    full = tmp_path / "full"
    train(tiny_config(data_csv, tiny_model_dir, full, tokenize=tokenize, **common), quiet=True)
    part = tmp_path / "part"
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(data_csv, tiny_model_dir, part, tokenize=tokenize, **common), task=interrupted_at(3), quiet=True)
    assert (part / "checkpoints" / "latest").read_text().strip() == "step-00000003"
    train(tiny_config(data_csv, tiny_model_dir, part, resume=True, tokenize=tokenize, **common), quiet=True)
    last = f"step-{common['max_steps']:08d}"
    a = load_file(full / "checkpoints" / last / "model.safetensors")
    b = load_file(part / "checkpoints" / last / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert json.loads((full / "metrics.json").read_text())["test"] == json.loads((part / "metrics.json").read_text())["test"]


def test_lazy_tokenization_trains_with_a_worker_and_writes_the_model(tmp_path, data_csv, tiny_model_dir):
    out = tmp_path / "run"
    result = train(tiny_config(data_csv, tiny_model_dir, out, tokenize="lazy", num_workers=1, max_steps=6), quiet=True)
    assert result.metrics["tokenize"] == "lazy" and result.metrics["global_steps"] == 6
    for name in ("model.safetensors", "config.json", "tokenizer.json", "acceltune.json", "metrics.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(r["tokens_per_second"] > 0 for r in records if r["kind"] == "train")
    assert result.metrics["test"]["examples"] == 12  # validation and test still tokenized up front


def test_auto_tokenizes_lazily_above_the_row_threshold(tmp_path, data_csv, tiny_model_dir, monkeypatch):
    from acceltune import batching

    monkeypatch.setattr(batching, "LAZY_ABOVE_ROWS", 35)  # 36 training rows
    result = train(tiny_config(data_csv, tiny_model_dir, tmp_path / "run", max_steps=2), quiet=True)
    assert result.metrics["tokenize"] == "lazy"


def test_resume_refuses_settings_that_change_the_batches(tmp_path, data_csv, tiny_model_dir):
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(data_csv, tiny_model_dir, out, save_every=2), task=interrupted_at(2), quiet=True)
    with pytest.raises(UserError, match=r"--batch-size 4 -> 8.*--seed 7 -> 8"):
        train(tiny_config(data_csv, tiny_model_dir, out, resume=True, batch_size=8, seed=8), quiet=True)
    # A longer run is allowed (epochs/max_steps may change), and the world size is checked too.
    train(tiny_config(data_csv, tiny_model_dir, out, resume=True, max_steps=4), quiet=True)
    from acceltune.training import checkpoint

    latest = checkpoint.latest_checkpoint(out)
    assert json.loads((latest / checkpoint.STATE_FILE).read_text())["world_size"] == 1
    with pytest.raises(UserError, match="world size 1 -> 2"):
        checkpoint.check_resumable(latest, tiny_config(data_csv, tiny_model_dir, out).to_dict(), world_size=2)


def test_checkpoint_write_is_atomic(tmp_path, data_csv, tiny_model_dir, monkeypatch):
    """A crash while writing a checkpoint leaves the previous one intact and pointed to."""
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(tiny_config(data_csv, tiny_model_dir, out, save_every=2), task=interrupted_at(2), quiet=True)
    from acceltune.training import checkpoint

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "atomic_write_text", crash)
    with pytest.raises(OSError):
        train(tiny_config(data_csv, tiny_model_dir, out, save_every=2, resume=True), quiet=True)
    monkeypatch.undo()
    assert checkpoint.latest_checkpoint(out).name == "step-00000002"
    state = json.loads((out / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


def test_gpt2_style_model_trains_and_pools_the_last_real_token(tmp_path, data_csv, tiny_gpt2_model_dir):
    out = tmp_path / "run"
    result = train(tiny_config(data_csv, tiny_gpt2_model_dir, out, max_steps=6, learning_rate=5e-3), quiet=True)
    assert result.metrics["global_steps"] == 6
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    before = AutoModelForSequenceClassification.from_pretrained(tiny_gpt2_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    # GPT-2 has no pad token of its own: the run gives it one, so batches of several lengths classify
    # each text by its last real token, exactly as that text alone.
    assert tok.pad_token_id is not None and model.config.pad_token_id == tok.pad_token_id
    texts = ["great", "terrible awful bad broken angry refund"]
    with torch.no_grad():
        batched = model(**tok(texts, padding=True, return_tensors="pt")).logits
        alone = torch.cat([model(**tok([t], return_tensors="pt")).logits for t in texts])
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    assert not torch.equal(model.score.weight, before.score.weight)  # the head was trained and published


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no AVX-512 BF16 or AMX")
def test_bf16_autocast_trains_a_tiny_model(tmp_path, data_csv, tiny_model_dir):
    result = train(tiny_config(data_csv, tiny_model_dir, tmp_path / "run", freeze_embeddings=False, max_steps=None,
                               epochs=6, learning_rate=2e-3, precision="bf16"), quiet=True)
    assert result.metrics["precision"] == "bf16"
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "train"]
    assert losses[-1] < losses[0]


def test_multi_label_and_class_weights(tmp_path, tiny_model_dir):
    import csv

    path = tmp_path / "ml.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "labels"])
        for i in range(40):
            tags = ["billing"] if i % 3 == 0 else ["shipping", "urgent"] if i % 3 == 1 else ["urgent"]
            w.writerow([f"message number {i} about " + " ".join(tags), ";".join(tags)])
    cfg = TrainConfig(data=DataArgs(train=str(path), multi_label=True, label_delimiter=";", validation_fraction=0.2,
                                    test_fraction=0.2),
                      model=ModelArgs(model=str(tiny_model_dir), max_length=32),
                      train=TrainArgs(output_dir=str(tmp_path / "run"), batch_size=4, max_steps=4, class_weights=True))
    result = train(cfg, quiet=True)
    info = json.loads((tmp_path / "run" / "acceltune.json").read_text())
    assert info["multi_label"] is True and info["labels"] == ["billing", "shipping", "urgent"]
    assert "hamming_accuracy" in result.metrics["test"]


def test_sentence_pair_task_trains_and_predicts_pairs(tmp_path, tiny_model_dir):
    import csv

    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["premise", "hypothesis", "label"])
        for i in range(30):
            w.writerow([f"the order {i} arrived", f"order {i} is here" if i % 2 else f"order {i} is lost",
                        "entails" if i % 2 else "contradicts"])
    cfg = TrainConfig(data=DataArgs(train=str(path), text_column="premise", text_pair_column="hypothesis",
                                    validation_fraction=0.2, test_fraction=0.2),
                      model=ModelArgs(model=str(tiny_model_dir), max_length=32),
                      train=TrainArgs(output_dir=str(tmp_path / "run"), batch_size=4, max_steps=3))
    train(cfg, quiet=True)
    from acceltune.inference.predictor import Predictor

    p = Predictor(tmp_path / "run")
    assert p.info.text_pair is True
    here, lost = p.predict(["the order 1 arrived"] * 2, ["order 1 is here", "order 1 is lost"], top_k=2)
    assert {r["label"] for r in here["top_k"]} == {"contradicts", "entails"}
    # The second text reaches the model: the same first text with another second one scores differently.
    assert here["top_k"][0]["score"] != lost["top_k"][0]["score"] or here["label"] != lost["label"]
    from acceltune.errors import UserError

    with pytest.raises(UserError):
        p.predict(["the order 1 arrived"])  # a pair model needs the second text


def test_class_weights_change_the_loss_as_computed_by_hand():
    import datasets

    from acceltune.data import Splits

    labels = [0, 0, 0, 1]  # weights n / (classes x count): 4/6 and 4/2
    splits = Splits(datasets.Dataset.from_dict({"text": ["a"] * 4, "labels": labels}), None, None, ["a", "b"], False, False)
    task = SequenceClassification()
    logits = torch.tensor([[2.0, 0.5], [0.1, 0.3], [1.0, -1.0]])
    target = torch.tensor([0, 1, 1])
    weighted = task.loss_function(splits, TrainArgs(class_weights=True, label_smoothing=0.0), None)(logits, target)
    plain = task.loss_function(splits, TrainArgs(class_weights=False, label_smoothing=0.0), None)(logits, target)
    logp = torch.log_softmax(logits, dim=1)[torch.arange(3), target]
    w = torch.tensor([4 / 6, 2.0])[target]
    assert float(weighted) == pytest.approx(float(-(w * logp).sum() / w.sum()), rel=1e-6)
    assert float(plain) == pytest.approx(float(-logp.mean()), rel=1e-6)
    assert float(weighted) != pytest.approx(float(plain), rel=1e-3)
    # Multi-label: BCE with pos_weight = negatives / positives per label.
    ml = Splits(datasets.Dataset.from_dict({"text": ["a"] * 4, "labels": [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]}),
                None, None, ["a", "b"], True, False)
    x, y = torch.tensor([[0.3, -0.2], [1.5, 0.7]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos_weight = torch.tensor([2 / 2, 3 / 1])
    by_hand = -(pos_weight * y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(1 - torch.sigmoid(x))).mean()
    got = task.loss_function(ml, TrainArgs(class_weights=True), None)(x, y)
    assert float(got) == pytest.approx(float(by_hand), rel=1e-6)


def test_logit_norm_is_cross_entropy_of_the_normalised_logits_and_refuses_bad_temperatures():
    import datasets

    from acceltune.data import Splits
    from acceltune.errors import UserError

    splits = Splits(datasets.Dataset.from_dict({"text": ["a"] * 2, "labels": [0, 1]}), None, None, ["a", "b", "c"], False, False)
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 4.0]])
    target = torch.tensor([0, 1])
    loss = SequenceClassification().loss_function(splits, TrainArgs(label_smoothing=0.0, logit_norm=0.5), None)
    got = loss(logits, target)
    scaled = logits / (0.5 * logits.norm(dim=1, keepdim=True))
    assert float(got) == pytest.approx(float(-torch.log_softmax(scaled, dim=1)[torch.arange(2), target].mean()), rel=1e-6)
    assert float(loss(3 * logits, target)) == pytest.approx(float(got), rel=1e-6)  # LogitNorm ignores the logits' scale
    for bad in (-0.1, 2.0):
        with pytest.raises(UserError, match="--logit-norm"):
            TrainArgs(logit_norm=bad)


def test_supervised_contrastive_term_matches_hand_computation():
    import numpy as np

    from acceltune.training.classification import supervised_contrastive

    rng = np.random.default_rng(0)
    f, y, t = rng.normal(size=(5, 3)), np.array([0, 1, 0, 2, 1]), 0.5
    z = f / np.linalg.norm(f, axis=1, keepdims=True)
    terms = []
    for i in range(5):
        others = [j for j in range(5) if j != i]
        positives = [j for j in others if y[j] == y[i]]
        if not positives:
            continue  # example 3 has no partner in the batch
        denominator = np.log(sum(np.exp(z[i] @ z[a] / t) for a in others))
        terms.append(np.mean([-(z[i] @ z[p] / t - denominator) for p in positives]))
    got = supervised_contrastive(torch.tensor(f, dtype=torch.float32), torch.tensor(y), t)
    assert float(got) == pytest.approx(float(np.mean(terms)), rel=1e-5)
    alone = torch.randn(3, 4, requires_grad=True)
    none = supervised_contrastive(alone, torch.tensor([0, 1, 2]), t)
    assert float(none.detach()) == 0.0 and none.requires_grad  # no pairs: zero, graph kept


def test_contrastive_loss_reads_the_pooled_features_of_training_passes_only(tiny_model_dir):
    import datasets

    from acceltune.data import Splits
    from acceltune.inference.heads import WithFeatures
    from acceltune.modeling import load_classifier, load_tokenizer
    from acceltune.training.classification import supervised_contrastive

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_classifier(str(tiny_model_dir), ["a", "b", "c"], False, tokenizer)
    splits = Splits(datasets.Dataset.from_dict({"text": ["a"] * 4, "labels": [0, 1, 0, 1]}), None, None, ["a", "b", "c"], False, False)
    loss_fn = SequenceClassification().loss_function(splits, TrainArgs(label_smoothing=0.0, contrastive_weight=0.5,
                                                                       contrastive_temperature=0.2), model)
    batch = tokenizer(["good day", "bad night", "good morning", "bad evening"], return_tensors="pt", padding=True)
    labels = torch.tensor([0, 1, 0, 1])
    model.eval()  # no dropout: the features below are the ones the loss saw
    logits = model(**batch).logits
    got = loss_fn(logits, labels)
    with torch.no_grad():
        _, features = WithFeatures(load_classifier(str(tiny_model_dir), ["a", "b", "c"], False, tokenizer)).eval()(**batch)
    expected = torch.nn.functional.cross_entropy(logits, labels) + 0.5 * supervised_contrastive(features, labels, 0.2)
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    (got - torch.nn.functional.cross_entropy(logits, labels)).backward()  # the term alone reaches the encoder
    assert float(model.bert.pooler.dense.weight.grad.abs().sum()) > 0
    with torch.inference_mode():
        eval_logits = model(**batch).logits
    assert float(loss_fn(eval_logits, labels)) == pytest.approx(float(torch.nn.functional.cross_entropy(eval_logits, labels)), rel=1e-6)
    with pytest.raises(UserError, match="--contrastive-weight"):
        TrainArgs(contrastive_weight=-1)
    multi = Splits(splits.train, None, None, ["a", "b", "c"], True, False)
    with pytest.raises(UserError, match="--contrastive-weight is for single-label"):
        SequenceClassification().loss_function(multi, TrainArgs(contrastive_weight=0.5), model)
    with pytest.raises(UserError, match="--logit-norm is for single-label"):
        SequenceClassification().loss_function(multi, TrainArgs(logit_norm=0.5), model)


def test_contrastive_term_is_active_in_the_training_loop(tmp_path, data_csv, tiny_model_dir):
    def first_loss(out, **kw):
        train(tiny_config(data_csv, tiny_model_dir, out, max_steps=2, log_every=1, **kw), quiet=True)
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        return next(r["loss"] for r in records if r.get("kind") == "train")

    plain, contrastive = first_loss(tmp_path / "plain"), first_loss(tmp_path / "contrastive", contrastive_weight=1.0)
    assert contrastive > plain  # same seed, same first batch: the term adds a positive amount (or 0 without pairs)
    assert (tmp_path / "contrastive" / "model.safetensors").is_file()


class ScriptedAccuracy(SequenceClassification):
    """Validation accuracy follows a script (evaluation during training), real metrics otherwise."""

    def __init__(self, script: list[float]):
        self.script = list(script)

    def metrics(self, logits, labels, splits, detailed):
        metrics = super().metrics(logits, labels, splits, detailed)
        if not detailed:
            metrics["accuracy"] = self.script.pop(0)
        return metrics


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path, data_csv, tiny_model_dir):
    out = tmp_path / "run"
    task = ScriptedAccuracy([0.5, 0.6, 0.6, 0.55, 0.9, 0.95])  # evaluations 3 and 4 do not improve on 0.6
    result = train(tiny_config(data_csv, tiny_model_dir, out, max_steps=20, eval_every=2, patience=2), task=task, quiet=True)
    assert result.metrics["global_steps"] == 8 and result.metrics["best_step"] == 4
    assert task.script == [0.9, 0.95]  # the fifth evaluation never ran
    evals = [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    assert evals == [2, 4, 6, 8]
    assert checkpoint_steps(out) == ["step-00000008"]  # the stop is checkpointed
    state = json.loads((out / "checkpoints" / "step-00000008" / "trainer_state.json").read_text())
    assert state["evals_without_improvement"] == 2 and state["best_metric"] == 0.6


def checkpoint_steps(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir())


@pytest.mark.parametrize("keep", [1, 3])
def test_checkpoint_pruning_keeps_exactly_n_checkpoints(tmp_path, data_csv, tiny_model_dir, keep):
    out = tmp_path / "run"
    train(tiny_config(data_csv, tiny_model_dir, out, max_steps=10, save_every=2, eval_every=100, keep_checkpoints=keep),
          quiet=True)
    assert checkpoint_steps(out) == [f"step-{s:08d}" for s in (2, 4, 6, 8, 10)][-keep:]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000010"


def test_parameter_groups_give_the_head_its_rate_and_spare_biases_and_layernorm_from_decay(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    from acceltune.training.loop import param_groups

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    model.get_input_embeddings().weight.requires_grad_(False)
    names = {id(p): n for n, p in model.named_parameters()}
    for args, head_lr in ((TrainArgs(learning_rate=1e-4, weight_decay=0.05), 1e-3),
                          (TrainArgs(learning_rate=1e-4, head_learning_rate=3e-4, weight_decay=0.05), 3e-4)):
        groups = param_groups(model, args)
        seen = [names[id(p)] for g in groups for p in g["params"]]
        assert sorted(seen) == sorted(n for n, p in model.named_parameters() if p.requires_grad)  # each once, frozen out
        for g in groups:
            for n in (names[id(p)] for p in g["params"]):
                assert g["lr"] == pytest.approx(head_lr if n.startswith("classifier.") else 1e-4), n
                no_decay = n.endswith(".bias") or "LayerNorm" in n
                assert g["weight_decay"] == (0.0 if no_decay else 0.05), n
        assert {(g["lr"], g["weight_decay"]) for g in groups} == {(head_lr, 0.0), (head_lr, 0.05), (1e-4, 0.0), (1e-4, 0.05)}
    assert TrainArgs(learning_rate=1e-4).head_learning_rate is None  # resolved where used, not in the config


def test_train_does_not_change_its_config(tmp_path, data_csv, tiny_model_dir):
    cfg = tiny_config(data_csv, tiny_model_dir, tmp_path / "run", max_steps=2)
    cfg.model.max_length = None
    before = cfg.to_dict()
    train(cfg, quiet=True)
    assert cfg.to_dict() == before
