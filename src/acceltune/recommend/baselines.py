"""The baselines every run is compared with on the same split: most-popular and item-kNN.

Item-kNN is cosine similarity between item columns of the binary user-item matrix (scipy sparse),
each item keeping its `KNN_NEIGHBOURS` most similar items; a user's score for an item is the sum of its
similarities to the user's history.
"""

from __future__ import annotations

import numpy as np

KNN_NEIGHBOURS = 100
KNN_CHUNK = 2048  # items per block of the similarity product: a (chunk x items) dense block at a time


def popularity(histories: list[np.ndarray], num_items: int) -> np.ndarray:
    """Interaction count of each item over ``histories``, as float32."""
    if not histories:
        return np.zeros(num_items, np.float32)
    return np.bincount(np.concatenate(histories), minlength=num_items).astype(np.float32)


def user_item_matrix(histories: list[np.ndarray], num_items: int):
    from scipy import sparse

    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate(histories) if histories else np.zeros(0, np.int64)
    m = sparse.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(histories), num_items))
    m.data[:] = 1.0  # binary: a repeated item counts once (duplicates were summed)
    return m


def item_similarity(train_histories: list[np.ndarray], num_items: int, neighbours: int = KNN_NEIGHBOURS):
    """Sparse (items, items) cosine similarities, ``neighbours`` per row, no self-similarity."""
    from scipy import sparse

    x = user_item_matrix(train_histories, num_items).tocsc()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    xn = x.multiply(1.0 / np.maximum(norms, 1e-12)).tocsc().astype(np.float32)
    xt = xn.T.tocsr()
    rows, cols, vals = [], [], []
    k = min(neighbours, num_items - 1)
    for start in range(0, num_items, KNN_CHUNK):
        stop = min(num_items, start + KNN_CHUNK)
        block = (xt[start:stop] @ xn).toarray()
        block[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if k <= 0:
            continue
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        v = np.take_along_axis(block, top, axis=1)
        keep = v > 0
        rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
        cols.append(top.ravel()[keep.ravel()])
        vals.append(v.ravel()[keep.ravel()])
    if not rows:
        return sparse.csr_matrix((num_items, num_items), dtype=np.float32)
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(num_items, num_items))


def knn_scores(similarity, histories: list[np.ndarray], num_items: int) -> np.ndarray:
    """(users, items) dense scores: the sum of each item's similarity to the history's items."""
    return np.asarray((user_item_matrix(histories, num_items) @ similarity).todense(), dtype=np.float32)


def baseline_metrics(split, num_items: int, which: str = "test") -> dict:
    """Most-popular and item-kNN on ``which`` split's targets, fitted on everything before them
    (training events; for test also the validation items), same exclusion and metrics as the model."""
    from acceltune.recommend.metrics import chunked_metrics

    eval_users = split.eval_users
    targets = split.test_targets if which == "test" else split.validation_targets
    histories = [split.history(int(u), which) for u in eval_users]
    evaluated = set(eval_users.tolist())
    fit = histories + [seq for u, seq in enumerate(split.train) if u not in evaluated]
    counts = popularity(fit, num_items)
    similarity = item_similarity(fit, num_items)
    return {
        "most_popular": chunked_metrics(lambda rows: np.tile(counts, (len(rows), 1)), histories, targets, num_items),
        "item_knn": chunked_metrics(lambda rows: knn_scores(similarity, [histories[r] for r in rows], num_items),
                                    histories, targets, num_items),
    }
