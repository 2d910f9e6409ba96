"""Recommendations from a trained model directory or its ONNX export: a batch of histories in, top-k items with
scores out.

Item vectors are computed once at load, so a request costs one pass of the sequence encoder over its history
and one product with the item matrix: by the PyTorch model of a trained directory, or by ONNX Runtime when the
directory is an export (recommend.scorers). A request without a usable history
(an unknown user with no events, or only unknown items) gets popular-and-fresh items: the items most
interacted with in the most recent tenth of the training interactions, then the items added after
training (newest first), flagged in the answer as ``"strategy": "popular_and_fresh"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from acceltune.recommend import artifacts
from acceltune.recommend.model import ITEM_OFFSET, MASK_ID, RecommenderConfig
from acceltune.recommend.scorers import OnnxScorer, TorchScorer

SEQUENCE = "sequence"
POPULAR_AND_FRESH = "popular_and_fresh"


@dataclass
class Query:
    history: list[str]
    k: int = 10
    exclude_seen: bool = True
    exclude: list[str] = field(default_factory=list)


@dataclass
class Answer:
    items: list[str]
    scores: list[float]
    strategy: str
    unknown_items: list[str]


class Recommender:
    """``threads``: inference threads (ONNX Runtime's intra-op threads for an export; torch's, process-wide, for a
    trained model directory; None: every usable core)."""

    def __init__(self, model_dir: str | Path, threads: int | None = None):
        self.model_dir = Path(model_dir)
        if artifacts.is_export(self.model_dir):
            self.meta, self.catalogue = artifacts.load_meta(self.model_dir), artifacts.load_catalogue(self.model_dir)
            self.model, self.scorer = None, OnnxScorer(self.model_dir, threads)
        else:
            self.model, self.catalogue, self.meta = artifacts.load(self.model_dir)
            self.scorer = TorchScorer(self.model, threads)
        self.config = RecommenderConfig(**self.meta["config"])
        fresh = np.flatnonzero(self.catalogue.added >= 0)
        fresh = fresh[np.argsort(-self.catalogue.added[fresh], kind="stable")]
        popular = np.lexsort((np.arange(len(self.catalogue.items)), -self.catalogue.popularity, -self.catalogue.recent))
        popular = popular[self.catalogue.added[popular] < 0]
        self.fallback_order = np.concatenate([popular, fresh])

    @property
    def backend(self) -> str:
        return self.scorer.backend

    @property
    def num_items(self) -> int:
        return len(self.catalogue.items)

    def known(self, history: list[str]) -> tuple[list[int], list[str]]:
        index = self.catalogue.item_index
        return [index[i] for i in history if i in index], [i for i in history if i not in index]

    def recommend(self, queries: list[Query]) -> list[Answer]:
        """One Answer per query, in order: one encoder pass and one top-k for all queries with a usable history."""
        resolved = [self.known(q.history) for q in queries]
        index = self.catalogue.item_index
        banned = [{index[e] for e in q.exclude if e in index} | (set(idx) if q.exclude_seen else set())
                  for q, (idx, _) in zip(queries, resolved)]
        with_history = [i for i, (idx, _) in enumerate(resolved) if idx]
        ranked = self._ranked([resolved[i][0] for i in with_history], [banned[i] for i in with_history],
                              [queries[i].k for i in with_history]) if with_history else []
        top = dict(zip(with_history, ranked))
        return [Answer(*top[i], SEQUENCE, unknown) if i in top else self._fallback(q.k, banned[i], unknown)
                for i, (q, (_, unknown)) in enumerate(zip(queries, resolved))]

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """(len(histories), items) next-item scores, nothing excluded."""
        suffix = [MASK_ID] if self.config.objective == "masked" else []
        window = self.config.max_len - len(suffix)
        rows = [[i + ITEM_OFFSET for i in h[-window:]] + suffix for h in histories]
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        for r, tokens in enumerate(rows):
            ids[r, :len(tokens)] = tokens
        return self.scorer(ids)

    def _ranked(self, histories: list[list[int]], banned: list[set[int]], ks: list[int]) -> list[tuple[list, list]]:
        """(items, scores) of each history's top k, banned items left out, ties in catalogue order."""
        ks = [max(0, min(k, self.num_items - len(b))) for k, b in zip(ks, banned)]
        with torch.inference_mode():
            scores = self.score(histories)
            rows = [r for r, b in enumerate(banned) for _ in b]
            if rows:
                scores[rows, [j for b in banned for j in b]] = -torch.inf
            values, top = torch.topk(scores, max(ks), dim=1)
        out = []
        for k, v, t in zip(ks, values.tolist(), top.tolist()):
            best = sorted(zip(v, t), key=lambda vt: (-vt[0], vt[1]))[:k]
            out.append(([self.catalogue.items[j] for _, j in best], [float(x) for x, _ in best]))
        return out

    def _fallback(self, k: int, banned: set[int], unknown: list[str]) -> Answer:
        order = [j for j in self.fallback_order if j not in banned][:k]
        total = max(float(self.catalogue.recent.sum()), 1.0)
        return Answer([self.catalogue.items[j] for j in order], [float(self.catalogue.recent[j]) / total for j in order],
                      POPULAR_AND_FRESH, unknown)

    def user_history(self, user_id: str) -> list[str]:
        """What training knew of ``user_id`` (empty for an unknown user)."""
        h = self.catalogue.user_history(user_id)
        return [] if h is None else [self.catalogue.items[j] for j in h]
