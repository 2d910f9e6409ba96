"""A recommender's model directory: weights, shape, and what serving starts from.

    model.safetensors   the SequenceRecommender's state dict (item_text buffer included)
    recommender.json    its RecommenderConfig, the text encoder, the training settings
    catalogue.json      item ids (row i of the item matrix is items[i]) and user ids
    catalogue.npz       per item: interactions, recent interactions, order added after training (-1: at training);
                        per user: the history known at training (offsets into one array)
    acceltune.json, training_config.yaml   as every acceltune model directory

Files are written to a temporary name and renamed, one by one; add-items rewrites them the same way.

An export (`acceltune recommend export`) has recommender.onnx (the encoder and the item matrix, one graph) in
place of model.safetensors, and the same catalogue files: it can be served, not trained further or added to.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acceltune.errors import UserError

RECOMMENDER_FILE = "recommender.json"
CATALOGUE_FILE = "catalogue.json"
ARRAYS_FILE = "catalogue.npz"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "recommender.onnx"
RECENT_SHARE = 0.1
"""Share of the most recent interactions that "recent popularity" (for unknown users) counts."""


@dataclass
class Catalogue:
    """Items and known users of a trained recommender (not weights: ids, counts and histories)."""

    items: list[str]
    popularity: np.ndarray
    recent: np.ndarray
    added: np.ndarray
    users: list[str]
    offsets: np.ndarray
    history: np.ndarray

    def __post_init__(self):
        self.item_index = {item: i for i, item in enumerate(self.items)}
        self.user_index = {user: u for u, user in enumerate(self.users)}

    @classmethod
    def from_interactions(cls, interactions) -> "Catalogue":
        n = len(interactions.catalogue)
        seqs = interactions.sequences
        history = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        times = np.concatenate(interactions.times) if seqs else np.zeros(0)
        popularity = np.bincount(history, minlength=n).astype(np.float32)
        cutoff = np.quantile(times, 1 - RECENT_SHARE) if len(times) else 0.0
        recent = np.bincount(history[times >= cutoff], minlength=n).astype(np.float32)
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        return cls(list(interactions.catalogue.ids), popularity, recent, np.full(n, -1, np.int64),
                   list(interactions.users), offsets, history.astype(np.int64))

    def user_history(self, user: str) -> np.ndarray | None:
        u = self.user_index.get(user)
        return None if u is None else self.history[self.offsets[u]:self.offsets[u + 1]]

    def with_items(self, new_items: list[str]) -> "Catalogue":
        """This catalogue plus ``new_items`` (no interactions yet, added in this order after the newest)."""
        k = len(new_items)
        start = int(self.added.max()) + 1 if len(self.added) and self.added.max() >= 0 else 0
        return Catalogue(self.items + list(new_items), np.append(self.popularity, np.zeros(k, np.float32)),
                         np.append(self.recent, np.zeros(k, np.float32)), np.append(self.added, np.arange(start, start + k)),
                         self.users, self.offsets, self.history)


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save(model_dir: Path, model, catalogue: Catalogue, *, text_encoder: str, settings: dict) -> None:
    from safetensors.torch import save_file

    model_dir = Path(model_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic(model_dir / WEIGHTS_FILE, lambda p: save_file(state, str(p)))
    meta = {"config": model.config.to_dict(), "text_encoder": text_encoder, "settings": settings}
    _atomic(model_dir / RECOMMENDER_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))
    _atomic(model_dir / CATALOGUE_FILE, lambda p: p.write_text(json.dumps({"items": catalogue.items, "users": catalogue.users})))

    def arrays(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, popularity=catalogue.popularity, recent=catalogue.recent, added=catalogue.added,
                     offsets=catalogue.offsets, history=catalogue.history)

    _atomic(model_dir / ARRAYS_FILE, arrays)


def is_export(model_dir: str | Path) -> bool:
    """The directory is an ONNX export (no PyTorch weights)."""
    return (Path(model_dir) / ONNX_FILE).is_file() and not (Path(model_dir) / WEIGHTS_FILE).is_file()


def load_meta(model_dir: str | Path) -> dict:
    """recommender.json of a trained model directory or its export (a UserError if it is neither)."""
    model_dir = Path(model_dir)
    weights = ONNX_FILE if is_export(model_dir) else WEIGHTS_FILE
    missing = [f for f in (RECOMMENDER_FILE, CATALOGUE_FILE, ARRAYS_FILE, weights) if not (model_dir / f).is_file()]
    if missing:
        raise UserError(f"{model_dir} is not a recommender model directory (no {', '.join(missing)}): "
                        "pass the --output-dir of 'acceltune recommend train' or the --output of 'acceltune recommend export'")
    return json.loads((model_dir / RECOMMENDER_FILE).read_text())


def load_catalogue(model_dir: str | Path) -> Catalogue:
    model_dir = Path(model_dir)
    ids = json.loads((model_dir / CATALOGUE_FILE).read_text())
    with np.load(model_dir / ARRAYS_FILE) as a:
        return Catalogue(ids["items"], a["popularity"], a["recent"], a["added"], ids["users"], a["offsets"], a["history"])


def load(model_dir: str | Path):
    """(SequenceRecommender in eval mode, Catalogue, recommender.json's dict) of a trained model directory."""
    from safetensors.torch import load_file

    from acceltune.recommend.model import RecommenderConfig, SequenceRecommender

    model_dir = Path(model_dir)
    meta = load_meta(model_dir)
    if is_export(model_dir):
        raise UserError(f"{model_dir} is an ONNX export, which holds no trained weights: pass the model directory it was "
                        "exported from (and export again afterwards)")
    catalogue = load_catalogue(model_dir)
    model = SequenceRecommender(RecommenderConfig(**meta["config"]))
    model.load_state_dict(load_file(str(model_dir / WEIGHTS_FILE)))
    model.catalogue = catalogue
    return model.eval(), catalogue, meta
