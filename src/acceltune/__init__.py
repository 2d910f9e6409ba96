"""acceltune: fine-tune, evaluate, optimise and serve BERT-family text classifiers.

What an application or a notebook imports::

    from acceltune import TrainConfig, DataArgs, train, Predictor, create_app, ServeSettings

Names are imported on first use (PEP 562), so ``import acceltune`` and ``acceltune --help`` stay fast,
and a name from an optional part (``create_app``: the ``serve`` extra, ``export_model``: ``export``)
fails only when used, with the ``pip install 'acceltune[...]'`` that provides it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> (module that defines it, pip extra the module needs or None). The one list of the public API.
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "TrainConfig": ("acceltune.config", None),
    "DataArgs": ("acceltune.config", None),
    "add_dataclass_arguments": ("acceltune.config", None),
    "dataclass_values": ("acceltune.config", None),
    "ModelArgs": ("acceltune.config", None),
    "TrainArgs": ("acceltune.config", None),
    "UserError": ("acceltune.errors", None),
    "load_splits": ("acceltune.data", None),
    "load_labeled": ("acceltune.data", None),
    "load_texts": ("acceltune.data", None),
    "train": ("acceltune.training.loop", None),
    "train_or_launch": ("acceltune.training.launch", None),  # train here, or data-parallel as the config asks
    "TrainResult": ("acceltune.training.loop", None),
    "Task": ("acceltune.training.task", None),
    "SequenceClassification": ("acceltune.training.classification", None),
    "Predictor": ("acceltune.inference.predictor", None),
    "resolve_model": ("acceltune.modeling", None),  # a --model name or alias -> the local directory or Hub id it loads
    "ModelInfo": ("acceltune.modeldir", None),
    "create_app": ("acceltune.serve", "serve"),
    "ServeSettings": ("acceltune.serve", "serve"),
    "export_model": ("acceltune.export", None),  # needs the export extra when called, not to import
    "onnx_session_options": ("acceltune.inference.backends.onnx_backend", None),  # ONNX Runtime on the CPU, as serving runs it
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and editors; at run time the names come from __getattr__
    from acceltune.config import DataArgs, ModelArgs, TrainArgs, TrainConfig
    from acceltune.data import load_labeled, load_splits, load_texts
    from acceltune.errors import UserError
    from acceltune.export import export_model
    from acceltune.inference.backends.onnx_backend import onnx_session_options
    from acceltune.inference.predictor import Predictor
    from acceltune.modeling import resolve_model
    from acceltune.modeldir import ModelInfo
    from acceltune.serve import ServeSettings, create_app
    from acceltune.training.classification import SequenceClassification
    from acceltune.training.loop import TrainResult, train
    from acceltune.training.task import Task


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'acceltune' has no attribute {name!r}")
    import importlib

    from acceltune.extras import require

    module, extra = _EXPORTS[name]
    value = getattr(require(module, extra) if extra else importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
