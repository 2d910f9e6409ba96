"""The layout of a model directory acceltune writes, and the metadata beside the weights.

A model directory is a standard Hugging Face directory (config.json with id2label, safetensors
weights, tokenizer files) plus ``acceltune.json``, which records what the weights alone do not:
the task, the maximum length, and the format (transformers, onnx, tensorrt).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from acceltune.errors import UserError

INFO_FILE = "acceltune.json"
TRAINING_CONFIG_FILE = "training_config.yaml"


@dataclass
class ModelInfo:
    labels: list[str]
    """Label names, index i is class i."""
    multi_label: bool = False
    """Sigmoid per label (True) or softmax over labels (False)."""
    max_length: int = 128
    """Tokens per text (pair) seen in training; longer inputs are truncated."""
    text_pair: bool = False
    """The model classifies sentence pairs."""
    format: str = "transformers"
    """transformers | onnx | tensorrt"""
    version: str = ""
    """Free-form model version (the training run's timestamp by default)."""
    threshold: float = 0.5
    """Multi-label decision threshold."""
    extra: dict = field(default_factory=dict)
    """Format-specific details (e.g. the ONNX file name, quantization)."""
    oos: dict | None = None
    """The out-of-scope rule (acceltune.oos.OOSRule as a dict; its statistics in oos.npz), or None."""

    def save(self, model_dir: str | os.PathLike) -> None:
        atomic_write_text(Path(model_dir) / INFO_FILE, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, model_dir: str | os.PathLike) -> "ModelInfo":
        model_dir = Path(model_dir)
        path = model_dir / INFO_FILE
        if not model_dir.is_dir():
            raise UserError(f"model directory {model_dir} does not exist: pass a directory written by 'acceltune train' or 'acceltune export'")
        if not path.is_file():
            return cls._from_hf_config(model_dir)
        return cls(**json.loads(path.read_text()))

    @classmethod
    def _from_hf_config(cls, model_dir: Path) -> "ModelInfo":
        """A plain Hugging Face classifier directory: derive the info from config.json."""
        cfg_path = model_dir / "config.json"
        if not cfg_path.is_file():
            raise UserError(f"{model_dir} is not a model directory (no {INFO_FILE} or config.json): pass a directory written by 'acceltune train'")
        cfg = json.loads(cfg_path.read_text())
        id2label = cfg.get("id2label") or {}
        labels = [id2label[k] for k in sorted(id2label, key=int)] if id2label else []
        return cls(
            labels=labels,
            multi_label=cfg.get("problem_type") == "multi_label_classification",
            max_length=min(int(cfg.get("max_position_embeddings", 512)), 512),
        )


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
