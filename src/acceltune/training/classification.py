"""Sequence classification (single- and multi-label, single texts or pairs): the first `Task`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from acceltune.config import DataArgs, TrainArgs, TrainConfig
from acceltune.data import Splits, load_splits
from acceltune.errors import UserError
from acceltune.metrics import compute_metrics
from acceltune.modeldir import ModelInfo
from acceltune.modeling import load_classifier
from acceltune.training.task import Task


class LogitNormLoss(nn.Module):
    """Cross-entropy of logits / (tau x their L2 norm) (LogitNorm, Wei et al., 2022): the logits' scale stops
    growing during training, so confidence and the features stay informative about unfamiliar inputs."""

    def __init__(self, cross_entropy: nn.CrossEntropyLoss, tau: float):
        super().__init__()
        self.cross_entropy, self.tau = cross_entropy, tau

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        norms = logits.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-7)
        return self.cross_entropy(logits / (self.tau * norms), labels)


class HeadInputTap:
    """The input of a model's head Linear (the pooled features the out-of-scope scores read) in the latest
    forward pass that builds a graph; evaluation passes (inference mode) leave it alone."""

    def __init__(self, model: nn.Module):
        from acceltune.inference.heads import find_head

        name = find_head(model)
        if name is None:
            raise UserError(f"--contrastive-weight needs the model's classification head, and {type(model).__name__} has no single "
                            f"Linear to its labels: leave --contrastive-weight at 0 for this model")
        self.features: torch.Tensor | None = None
        model.get_submodule(name).register_forward_pre_hook(self._keep)

    def _keep(self, module, inputs) -> None:
        if torch.is_grad_enabled():
            self.features = inputs[0]

    def take(self) -> torch.Tensor | None:
        features, self.features = self.features, None
        return features


def supervised_contrastive(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Khosla et al. (2020), L_out: for each example with another of its class in the batch, the mean over those
    positives of -log softmax of cosine similarity / temperature against every other example. 0 without pairs."""
    z = nn.functional.normalize(features.float(), dim=-1)
    n = len(labels)
    self_pair = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(self_pair, float("-inf"))
    log_prob = (sim - torch.logsumexp(sim, dim=1, keepdim=True)).masked_fill(self_pair, 0.0)
    positive = (labels[:, None] == labels[None, :]) & ~self_pair
    count = positive.sum(1)
    anchors = count > 0
    if not anchors.any():
        return z.sum() * 0.0  # keeps the graph (and DDP's gradient hooks) whole
    return (-(log_prob * positive).sum(1)[anchors] / count[anchors]).mean()


class ContrastiveLoss(nn.Module):
    """A loss plus ``weight`` x the supervised contrastive term on the pooled features of the same forward pass.
    Pulling each intent's features together and apart from the others' tightens the clusters that the distance
    scores (Mahalanobis, kNN) measure; evaluation, which keeps no features, gets the loss alone."""

    def __init__(self, loss: nn.Module, tap: HeadInputTap, weight: float, temperature: float):
        super().__init__()
        self.loss, self.tap, self.weight, self.temperature = loss, tap, weight, temperature

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.loss(logits, labels)
        features = self.tap.take()
        if features is None:  # an evaluation pass
            return loss
        return loss + self.weight * supervised_contrastive(features, labels, self.temperature)


def loss_function(multi_label: bool, class_weights: torch.Tensor | None, label_smoothing: float,
                  logit_norm: float = 0.0) -> nn.Module:
    """BCE per label (class weights as pos_weight) or cross-entropy over labels (class weights, smoothing,
    LogitNorm when ``logit_norm`` > 0)."""
    if multi_label:
        return nn.BCEWithLogitsLoss(pos_weight=class_weights)
    ce = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing)
    return LogitNormLoss(ce, logit_norm) if logit_norm > 0 else ce


def inverse_frequency_weights(labels, num_labels: int, multi_label: bool) -> torch.Tensor:
    """Single-label: n / (classes x count) per class. Multi-label: negatives / positives per label (BCE's pos_weight)."""
    if multi_label:
        pos = np.asarray(labels, dtype=np.float64).sum(axis=0)
        neg = len(labels) - pos
        return torch.tensor(np.where(pos > 0, neg / np.maximum(pos, 1), 1.0), dtype=torch.float)
    counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(np.float64)
    weights = len(labels) / (num_labels * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float)


def check_oos_settings(splits: Splits, args: DataArgs) -> None:
    """Out-of-scope settings that cannot work with these splits fail before training, not after it."""
    from acceltune.oos import parse_goal

    goal = parse_goal(args.oos_goal) if args.oos_goal is not None else None
    if goal is None:
        return
    if splits.multi_label:
        raise UserError("--oos-goal: out-of-scope detection is for single-label models; leave --oos-goal out for multi-label data")
    if splits.validation is None or len(splits.validation) == 0:
        raise UserError("--oos-goal needs a validation split to calibrate on: pass --validation or a --validation-fraction above 0")
    if goal.kind == "oos_recall":
        from acceltune.batching import column_array

        oos = splits.labels.index(args.oos_label) if args.oos_label in splits.labels else None
        if oos is None or not np.any(column_array(splits.validation, "labels") == oos):
            raise UserError(f"--oos-goal {goal} needs out-of-scope examples (label {args.oos_label!r}) in the validation data: "
                            f"add some (or pass --oos-label NAME), or use an in_scope_recall goal")


class SequenceClassification(Task):
    """A Hugging Face AutoModelForSequenceClassification over the label set found in the training data."""

    def load_splits(self, data_args: DataArgs, seed: int) -> Splits:
        splits = load_splits(data_args, seed=seed)
        check_oos_settings(splits, data_args)
        return splits

    def build_model(self, model_path: str, splits: Splits, tokenizer, trust_remote_code: bool) -> nn.Module:
        return load_classifier(model_path, splits.labels, splits.multi_label, tokenizer, trust_remote_code)

    def float_labels(self, splits: Splits) -> bool:
        return splits.multi_label  # multi-hot vectors

    def loss_function(self, splits: Splits, args: TrainArgs, model: nn.Module) -> nn.Module:
        from acceltune.batching import column_array

        weights = (inverse_frequency_weights(column_array(splits.train, "labels"), len(splits.labels), splits.multi_label)
                   if args.class_weights else None)
        if splits.multi_label:
            for flag, value in (("--logit-norm", args.logit_norm), ("--contrastive-weight", args.contrastive_weight)):
                if value > 0:
                    raise UserError(f"{flag} is for single-label classification: leave it at 0 for multi-label data")
        loss = loss_function(splits.multi_label, weights, args.label_smoothing, args.logit_norm)
        if args.contrastive_weight == 0:
            return loss
        return ContrastiveLoss(loss, HeadInputTap(model), args.contrastive_weight, args.contrastive_temperature)

    def metrics(self, logits: np.ndarray, labels: np.ndarray, splits: Splits, detailed: bool) -> dict:
        return compute_metrics(logits, labels, splits.labels, splits.multi_label, ModelInfo.threshold, detailed=detailed)

    def model_info(self, splits: Splits, max_length: int, version: str) -> ModelInfo:
        return ModelInfo(labels=splits.labels, multi_label=splits.multi_label, max_length=max_length,
                         text_pair=splits.text_pair, version=version)

    def finalize(self, output_dir: Path, splits: Splits, config: TrainConfig, metrics: dict) -> None:
        """The out-of-scope rule: fitted on the trained model's outputs, saved beside it (acceltune.oos)."""
        if splits.multi_label:
            return
        from acceltune.oos.fit import calibrate_trained_model

        calibrate_trained_model(output_dir, splits, config.data, config.train, metrics)

    def write_report(self, output_dir: Path, metrics: dict, history: list[dict], splits: Splits, split: str, title: str) -> None:
        from acceltune.report import write_report

        write_report(output_dir, metrics, splits.labels, history, split=split, title=title)

    def eval_line(self, metrics: dict) -> str:
        return f"validation accuracy {metrics['accuracy']:.4f} · macro F1 {metrics['macro_f1']:.4f} · loss {metrics['loss']:.4f}"
