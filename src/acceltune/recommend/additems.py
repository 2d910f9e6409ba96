"""`acceltune recommend add-items`: new items join a trained model without retraining.

Each new item's text is encoded by the model's own text encoder and projected by the trained projection;
its id embedding is zero (nothing was learned about it), so its score comes from its text alone, the
part of every item's vector that training with id dropout taught to score on its own. Items already in
the model are skipped (running the same file twice changes nothing).
"""

from __future__ import annotations

from pathlib import Path

import torch

from acceltune.errors import UserError
from acceltune.recommend import artifacts
from acceltune.recommend.data import read_items
from acceltune.recommend.model import RecommenderConfig, SequenceRecommender


def add_items(model_dir: str | Path, items_path: str, id_column: str | None = None,
              text_columns: list[str] | None = None) -> tuple[int, int]:
    """(items added, items skipped as already present)."""
    from acceltune import resolve_model
    from acceltune.recommend.text import encode_texts

    model, catalogue, meta = artifacts.load(model_dir)
    new = read_items(items_path, id_column, text_columns)
    fresh = [(i, t) for i, t in zip(new.ids, new.texts) if i not in catalogue.item_index]
    skipped = len(new.ids) - len(fresh)
    if not fresh:
        return 0, skipped
    if not model.config.text_dim:
        raise UserError(f"{model_dir} was trained without item text, so a new item has nothing to be scored by: "
                        "retrain with --items FILE holding text fields")
    no_text = [i for i, t in fresh if not t]
    if no_text:
        raise UserError(f"{items_path}: {len(no_text)} new item(s) without text ({', '.join(no_text[:5])}): "
                        "a new item is scored from its text; fill in a text field")
    text = torch.from_numpy(encode_texts(resolve_model(meta["text_encoder"]), [t for _, t in fresh]))
    config = RecommenderConfig(**{**meta["config"], "num_items": model.config.num_items + len(fresh)})
    grown = SequenceRecommender(config)
    state = model.state_dict()
    state["item_ids.weight"] = torch.cat([state["item_ids.weight"], torch.zeros(len(fresh), config.hidden)])
    state["item_text"] = torch.cat([state["item_text"], text])
    grown.load_state_dict(state)
    artifacts.save(Path(model_dir), grown, catalogue.with_items([i for i, _ in fresh]),
                   text_encoder=meta["text_encoder"], settings=meta["settings"])
    return len(fresh), skipped
