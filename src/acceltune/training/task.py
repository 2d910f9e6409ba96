"""What the training loop needs to know about one kind of problem: a `Task`.

The loop (acceltune.training.loop) owns device, precision, batching, optimisation, checkpoints,
evaluation timing and distribution; a Task owns everything that depends on what is being learned:
where the examples come from, which model and loss fit them, how predictions are scored and what
the published model directory holds. Sequence classification (acceltune.training.classification)
is the first Task; another one (regression, token classification, ...) is a new subclass, not a
new loop.

The loop calls, in this order: `load_splits` → `load_tokenizer` → `build_model` → `model_info` → `loss_function`,
then per evaluation `eval_outputs` (per batch) and `metrics`, per improvement `save_model`, and once at the end `finalize` and `write_report`.
Examples are ``datasets`` rows with ``text`` (and ``text_pair``) and ``labels``; the model is called
as ``model(input_ids=..., attention_mask=...)`` and returns ``.logits``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import nn

from acceltune.config import DataArgs, TrainArgs, TrainConfig
from acceltune.data import Splits
from acceltune.modeldir import TRAINING_CONFIG_FILE, ModelInfo


class Task(ABC):
    """One kind of problem the loop can train. Instances hold no run state: one may train many models."""

    head_modules: tuple[str, ...] = ("classifier", "score", "pre_classifier")
    """Top-level modules of the newly initialised head, trained at --head-learning-rate (AutoModelFor*'s names)."""

    @abstractmethod
    def load_splits(self, data_args: DataArgs, seed: int) -> Splits:
        """Train/validation/test examples (the loop refuses an empty training split)."""

    @abstractmethod
    def build_model(self, model_path: str, splits: Splits, tokenizer, trust_remote_code: bool) -> nn.Module:
        """A freshly initialised model for these splits (the loop seeds torch before calling)."""

    @abstractmethod
    def float_labels(self, splits: Splits) -> bool:
        """Whether the labels are float tensors (targets, multi-hot) rather than class indices."""

    @abstractmethod
    def loss_function(self, splits: Splits, args: TrainArgs, model: nn.Module) -> nn.Module:
        """loss(logits as fp32, labels) -> scalar; a Module, so that it moves with the model's device. ``model`` is
        the unwrapped model being trained, for a loss that also reads its intermediate outputs (forward hooks)."""

    @abstractmethod
    def metrics(self, logits: np.ndarray, labels: np.ndarray, splits: Splits, detailed: bool) -> dict:
        """Scores of one split's predictions; must contain the --early-stopping-metric used (or it is "loss")."""

    def eval_outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What `metrics` receives of one evaluation batch, one row per example (default: the logits, unchanged).
        A Task whose logits are too wide to keep for a whole split (a score for every catalogue item) reduces
        them here, so that evaluation memory does not grow with split size times width; its `metrics` then
        returns the split's "loss" too, as the loop can no longer compute it from the logits."""
        return logits

    @abstractmethod
    def model_info(self, splits: Splits, max_length: int, version: str) -> ModelInfo:
        """What acceltune.json records beside the weights (how the predictor reads the outputs)."""

    def load_tokenizer(self, model_path: str, splits: Splits, trust_remote_code: bool):
        """What turns the examples' ``text`` into ``input_ids`` (default: the model's own tokenizer). A Task whose
        words are not natural language (item ids) builds its vocabulary from the splits instead."""
        from acceltune.modeling import load_tokenizer

        return load_tokenizer(model_path, trust_remote_code)

    def selection_metric(self, args: TrainArgs) -> str:
        """The validation metric that picks the best checkpoint and drives early stopping ("loss": lower is better)."""
        return args.early_stopping_metric

    def save_model(self, model_dir: Path, model: nn.Module, tokenizer, info: ModelInfo, config: TrainConfig) -> None:
        """Write the model directory's files into ``model_dir`` (the loop moves them into place atomically)."""
        model.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        info.save(model_dir)
        config.save(model_dir / TRAINING_CONFIG_FILE)

    def finalize(self, output_dir: Path, splits: Splits, config: TrainConfig, metrics: dict) -> None:
        """Once, on the main process, after the best model is in ``output_dir`` and evaluated and before metrics.json
        and the report are written: fit what reads the trained model (classification: the out-of-scope rule),
        adding its files to ``output_dir`` and its figures to ``metrics``. Nothing by default."""

    def write_report(self, output_dir: Path, metrics: dict, history: list[dict], splits: Splits, split: str, title: str) -> None:
        """Human-readable results next to metrics.json (none by default)."""

    def eval_line(self, metrics: dict) -> str:
        """The line printed after each evaluation."""
        return " · ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def labels_tensor(labels: np.ndarray, float_labels: bool) -> torch.Tensor:
    return torch.tensor(labels, dtype=torch.float if float_labels else torch.long)
