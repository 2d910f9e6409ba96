"""Item text → one vector per item, computed once: a sentence encoder (default: the packaged MiniLM,
all-MiniLM-L6-v2) with mean pooling and L2 normalisation, as sentence-transformers uses it.
Items without text get a zero vector (their score then comes from the id embedding alone).

Encoding is the slow part of a short training run (thousands of titles through a transformer on a CPU), so
``cached_text_embeddings`` keeps the result in the output directory, keyed by the encoder and every text:
a resumed or repeated run with the same catalogue reads it instead of encoding again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

TEXT_MAX_TOKENS = 64  # titles, genres and short descriptions; longer text is truncated
TEXT_BATCH = 256  # sorted by length, so a batch of short titles pads little
TEXT_CACHE_FILE = "item_text_cache.npz"


def encode_texts(model_path: str, texts: list[str]) -> np.ndarray:
    """(len(texts), hidden) float32 embeddings; zero rows for empty texts."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval()
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    todo = [i for i, t in enumerate(texts) if t]
    todo.sort(key=lambda i: len(texts[i]))  # similar lengths per batch: little padding
    with torch.inference_mode():
        for start in range(0, len(todo), TEXT_BATCH):
            rows = todo[start:start + TEXT_BATCH]
            enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=TEXT_MAX_TOKENS,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def cache_key(model_path: str, texts: list[str]) -> str:
    h = hashlib.sha256(f"{Path(model_path).resolve() if Path(model_path).exists() else model_path}\0{TEXT_MAX_TOKENS}".encode())
    for t in texts:
        h.update(b"\0" + t.encode())
    return h.hexdigest()


def cached_text_embeddings(model_path: str, texts: list[str], cache_dir: str | Path | None) -> np.ndarray:
    """encode_texts, read from ``cache_dir``/TEXT_CACHE_FILE when it holds these texts by this encoder
    (written there, atomically, when it does not; no cache_dir: encode)."""
    if cache_dir is None:
        return encode_texts(model_path, texts)
    path = Path(cache_dir) / TEXT_CACHE_FILE
    key = cache_key(model_path, texts)
    if path.is_file():
        with np.load(path) as cached:
            if str(cached["key"]) == key:
                return cached["embeddings"]
    embeddings = encode_texts(model_path, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # data-parallel ranks write the same file at once
    with open(tmp, "wb") as f:
        np.savez(f, key=np.array(key), embeddings=embeddings)
    os.replace(tmp, path)
    return embeddings
