"""Item text → one vector per item, computed once: a sentence encoder (default: the packaged MiniLM,
all-MiniLM-L6-v2) with mean pooling and L2 normalisation, as sentence-transformers uses it.
Items without text get a zero vector (their score then comes from the id embedding alone)."""

from __future__ import annotations

import numpy as np

TEXT_MAX_TOKENS = 64  # titles, genres and short descriptions; longer text is truncated
TEXT_BATCH = 128


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
