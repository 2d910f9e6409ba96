"""A second Task through the same loop (regression on a number column), and the test Tasks that stop a
run from inside it: an interruption here is a real SIGINT through the loop's own signal handler."""

from __future__ import annotations

import csv
import json
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from acceltune.config import DataArgs, ModelArgs, TrainArgs, TrainConfig
from acceltune.data import Splits
from acceltune.modeldir import ModelInfo
from acceltune.training.classification import SequenceClassification
from acceltune.training.loop import TrainingInterrupted, train
from acceltune.training.task import Task
from helpers import WORDS


class InterruptingLoss(nn.Module):
    """The wrapped loss, raising SIGINT in this process during the forward pass that completes step ``at``."""

    def __init__(self, loss: nn.Module, at: int, grad_accumulation: int):
        super().__init__()
        self.loss = loss
        self.calls_left = at * grad_accumulation

    def forward(self, logits, labels):
        if logits.requires_grad:  # training micro-batches only, not evaluation
            self.calls_left -= 1
            if self.calls_left == 0:
                signal.raise_signal(signal.SIGINT)
        return self.loss(logits, labels)


def interrupting(task_class: type, at: int) -> type:
    """``task_class`` whose runs are interrupted (SIGINT) once ``at`` optimizer steps are done."""

    class Interrupting(task_class):
        def loss_function(self, splits, args, model):
            return InterruptingLoss(super().loss_function(splits, args, model), at, args.grad_accumulation)

    Interrupting.__name__ = f"Interrupting{task_class.__name__}At{at}"
    return Interrupting


InterruptingClassificationAt5 = interrupting(SequenceClassification, 5)
"""For tests/test_distributed.py's launched workers (loaded by "test_task:InterruptingClassificationAt5")."""


class MeanSquaredError(nn.Module):
    def forward(self, logits, labels):
        return nn.functional.mse_loss(logits.squeeze(-1), labels)


class Regression(Task):
    """Predict the number in --label-column from the text: one output, MSE loss, metric mse."""

    def load_splits(self, data_args: DataArgs, seed: int) -> Splits:
        import datasets

        with open(data_args.train, newline="") as f:
            rows = list(csv.DictReader(f))
        ds = datasets.Dataset.from_dict({"text": [r["text"] for r in rows],
                                         "labels": [float(r[data_args.label_column]) for r in rows]})
        held = ds.train_test_split(test_size=0.4, seed=seed)
        val_test = held["test"].train_test_split(test_size=0.5, seed=seed)
        return Splits(held["train"], val_test["train"], val_test["test"], labels=[], multi_label=False, text_pair=False)

    def build_model(self, model_path, splits, tokenizer, trust_remote_code):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1, problem_type="regression",
                                                                  ignore_mismatched_sizes=True)

    def float_labels(self, splits):
        return True

    def loss_function(self, splits, args, model):
        return MeanSquaredError()

    def metrics(self, logits, labels, splits, detailed):
        return {"mse": float(np.mean((logits[:, 0] - labels) ** 2)), "examples": len(labels)}

    def model_info(self, splits, max_length, version):
        return ModelInfo(labels=["value"], max_length=max_length, version=version)


def write_number_csv(path: Path, n: int = 60, seed: int = 0) -> Path:
    """Texts of positive and neutral words; the target is the number of positive ones."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "score"])
        for _ in range(n):
            k = rng.randint(0, 4)
            words = [rng.choice(WORDS["positive"]) for _ in range(k)] + [rng.choice(WORDS["neutral"]) for _ in range(4 - k)]
            rng.shuffle(words)
            w.writerow([" ".join(words), k])
    return path


def regression_config(data: Path, model: Path, out: Path, **train_kw) -> TrainConfig:
    kw = dict(output_dir=str(out), batch_size=4, learning_rate=1e-3, max_steps=10, log_every=2, eval_every=3,
              save_every=3, seed=3, early_stopping_metric="loss", label_smoothing=0.0)
    kw.update(train_kw)
    return TrainConfig(data=DataArgs(train=str(data), label_column="score"),
                       model=ModelArgs(model=str(model), max_length=16, freeze_embeddings=False), train=TrainArgs(**kw))


def test_a_regression_task_trains_checkpoints_and_resumes_through_the_same_loop(tmp_path, tiny_model_dir):
    data = write_number_csv(tmp_path / "numbers.csv")
    full = train(regression_config(data, tiny_model_dir, tmp_path / "full"), task=Regression(), quiet=True)
    assert full.metrics["global_steps"] == 10
    assert set(full.metrics["test"]) == {"mse", "examples", "loss"} and full.metrics["test"]["examples"] == 12
    # The loop's evaluation loss is the Task's MSE: the same number as its metric.
    assert full.metrics["test"]["loss"] == pytest.approx(full.metrics["test"]["mse"], rel=1e-5)
    evals = [r for r in map(json.loads, (tmp_path / "full" / "log.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6, 9, 10]
    best = min(evals, key=lambda r: r["loss"])
    assert full.metrics["best_step"] == best["step"]
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "full").config.num_labels == 1

    part = tmp_path / "part"
    with pytest.raises(TrainingInterrupted):
        train(regression_config(data, tiny_model_dir, part), task=interrupting(Regression, 4)(), quiet=True)
    assert (part / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    resumed = train(regression_config(data, tiny_model_dir, part, resume=True), task=Regression(), quiet=True)
    a = load_file(tmp_path / "full" / "checkpoints" / "step-00000010" / "model.safetensors")
    b = load_file(part / "checkpoints" / "step-00000010" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert resumed.metrics["test"] == full.metrics["test"]
