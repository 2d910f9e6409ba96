"""Full-ranking metrics (the field's protocol): every catalogue item is scored, the user's own history is
excluded beforehand (scores set to EXCLUDED), and the target's rank breaks ties by item index, as a
stable top-k would. One target per user, so Recall@k equals HR@k; they are reported under both names."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from acceltune.recommend.model import EXCLUDED  # the score excluded items get, the same in the model's evaluation
CUTOFFS = (10, 20)
TOP = 10
ROW_WIDTH = 2 + TOP
"""Floats kept per evaluated user (evaluation_rows): target rank, target loss, the top-10 item indices."""


def exclude(scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    """``scores`` (users, items) with each user's history set to EXCLUDED, in place."""
    for row, items in enumerate(histories):
        scores[row, items] = EXCLUDED
    return scores


def ranks_of(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all items (higher score first, ties by lower index)."""
    cols = torch.arange(scores.shape[1], device=scores.device)[None, :]
    t = scores.gather(1, targets[:, None])
    return ((scores > t) | ((scores == t) & (cols < targets[:, None]))).sum(1)


def best_of(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best items per row, best first (ties by lower index, also at the k-th place)."""
    n, items = scores.shape
    k = min(k, items)
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    # Exactly k per row: everything above the k-th score, then the lowest-index ties.
    take = above | (tied & (tied.cumsum(1) <= k - above.sum(1, keepdim=True)))
    top = take.nonzero()[:, 1].view(n, k)  # per row, ascending item index
    return top.gather(1, torch.sort(-scores.gather(1, top), dim=1, stable=True).indices)


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return ranks_of(torch.from_numpy(np.ascontiguousarray(scores)), torch.from_numpy(np.asarray(targets, np.int64))).numpy()


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return best_of(torch.from_numpy(np.ascontiguousarray(scores)), k).numpy()


def evaluation_rows(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(users, ROW_WIDTH): each user's target rank, the cross-entropy of the target and the top-10 item indices
    (-1 past the catalogue's end): all that `rows_metrics` needs, so that an evaluation keeps 12 floats a user
    instead of a score for every item (float32 holds the indices exactly up to 2**24 items)."""
    top = F.pad(best_of(scores, TOP), (0, TOP - min(TOP, scores.shape[1])), value=-1)
    loss = F.cross_entropy(scores, targets, reduction="none")
    return torch.cat([ranks_of(scores, targets)[:, None].float(), loss[:, None], top.float()], dim=1)


def rows_metrics(rows: np.ndarray, num_items: int) -> dict:
    """The metrics and the mean target loss from `evaluation_rows` (concatenated over batches)."""
    top = rows[:, 2:].astype(np.int64)
    metrics = summarise(rows[:, 0].astype(np.int64), top[top >= 0], num_items)
    if len(rows):
        metrics["loss"] = float(rows[:, 1].mean())
    return metrics


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
