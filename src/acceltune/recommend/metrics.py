"""Full-ranking metrics (the field's protocol): every catalogue item is scored, the user's own history is
excluded beforehand (scores set to EXCLUDED), and the target's rank breaks ties by item index, as a
stable top-k would. One target per user, so Recall@k equals HR@k; they are reported under both names."""

from __future__ import annotations

import numpy as np

from acceltune.recommend.model import EXCLUDED  # the score excluded items get, the same in the model's evaluation
CUTOFFS = (10, 20)


def exclude(scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """``scores`` (users, items) with each user's history set to EXCLUDED, in place."""
    for row, items in enumerate(histories):
        scores[row, items] = EXCLUDED
    return scores


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among all items (higher score first, ties by lower index)."""
    t = scores[np.arange(len(targets)), targets][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    return ((scores > t) | ((scores == t) & (cols < targets[:, None]))).sum(axis=1)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best items per row, best first (ties by lower index)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(np.arange(k), (len(scores), 1))
    vals = scores[np.arange(len(scores))[:, None], part]
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def ranking_metrics(scores: np.ndarray, targets: np.ndarray) -> dict:
    """HR@10, NDCG@10, Recall@20, MRR and catalogue coverage of the top 10 (scores already excluded)."""
    return summarise(target_ranks(scores, targets), top_k(scores, 10), scores.shape[1])


def summarise(ranks: np.ndarray, top10: np.ndarray, num_items: int) -> dict:
    """The metrics from each user's target rank and top-10 list (concatenated over chunks of users)."""
    if len(ranks) == 0:
        return {"users": 0}
    return {
        "hr@10": float(np.mean(ranks < 10)),
        "ndcg@10": float(np.mean(np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0))),
        "hr@20": float(np.mean(ranks < 20)),
        "recall@20": float(np.mean(ranks < 20)),
        "mrr": float(np.mean(1.0 / (ranks + 1.0))),
        "coverage@10": float(len(np.unique(top10)) / num_items),
        "users": int(len(ranks)),
    }


def chunked_metrics(score_chunk, histories: list[np.ndarray], targets: np.ndarray, num_items: int, chunk: int = 1024) -> dict:
    """Metrics of a scorer called on chunks of users: ``score_chunk(rows) -> (len(rows), items)`` scores;
    a (users x items) matrix never exists for all users at once."""
    ranks, tops = [], []
    for start in range(0, len(targets), chunk):
        rows = np.arange(start, min(len(targets), start + chunk))
        scores = exclude(np.array(score_chunk(rows), dtype=np.float32), [histories[r] for r in rows])
        ranks.append(target_ranks(scores, targets[rows]))
        tops.append(top_k(scores, 10))
    return summarise(np.concatenate(ranks) if ranks else np.zeros(0), np.concatenate(tops) if tops else np.zeros(0), num_items)
