"""Fitting the out-of-scope rule of a freshly trained model directory (called once after training).

The trained directory is read back through `Predictor` (torch backend), so the rule is fitted on exactly the
outputs prediction and serving compute. Score statistics come from (at most MAX_FIT_TRAIN of) the training
examples, the temperature and the threshold from the validation split.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from acceltune.config import DataArgs, TrainArgs
from acceltune.inference.backends.base import Outputs
from acceltune.modeldir import ModelInfo
from acceltune.oos.rule import Calibration, evaluate_rule, fit_rule

MAX_FIT_TRAIN = 20_000
"""Most training examples the score statistics are computed from (a seeded sample beyond: one forward pass each)."""


def _outputs(predictor, ds) -> tuple[Outputs, np.ndarray]:
    pairs = ds["text_pair"] if "text_pair" in ds.column_names else None
    outputs, _ = predictor.outputs(ds["text"], pairs)
    return outputs, np.asarray(ds["labels"], dtype=np.int64)


def calibrate_trained_model(model_dir: Path, splits, data_args: DataArgs, train_args: TrainArgs, metrics: dict) -> None:
    """Fit the rule, save it in ``model_dir`` (oos.npz, acceltune.json) and add its figures to ``metrics``
    (``oos``; per split the in-scope / out-of-scope metrics). Nothing when no rule is asked for."""
    from acceltune.inference.predictor import Predictor

    if splits.validation is None or len(splits.validation) == 0:
        if data_args.oos_goal not in (None, "none"):
            metrics["oos"] = {"skipped": "no validation split to calibrate on"}
        return
    start = time.perf_counter()
    predictor = Predictor(model_dir, backend="torch", device=train_args.device)
    train = splits.train
    if len(train) > MAX_FIT_TRAIN:
        train = train.select(np.sort(np.random.default_rng(train_args.seed).choice(len(train), MAX_FIT_TRAIN, replace=False)))
    data = Calibration(*_outputs(predictor, train), *_outputs(predictor, splits.validation))
    rule = fit_rule(data, splits.labels, data_args.oos_label or None, data_args.oos_goal, data_args.oos_score)
    if rule is None:
        return
    rule.save(model_dir)
    info = ModelInfo.load(model_dir)
    info.oos = rule.to_json()
    info.save(model_dir)
    evaluated = {"validation": (data.validation, data.validation_labels)}
    if splits.test is not None and len(splits.test):
        evaluated["test"] = _outputs(predictor, splits.test)
    for split, (outputs, labels) in evaluated.items():
        if isinstance(metrics.get(split), dict):
            metrics[split].update(evaluate_rule(rule, outputs, labels))
    metrics["oos"] = {"score": rule.score, "threshold": rule.threshold, "goal": rule.goal, "label": rule.label,
                      "learnt_as_class": rule.label_index is not None and bool(np.any(data.train_labels == rule.label_index)),
                      **rule.validation, "calibration_s": round(time.perf_counter() - start, 2)}
