"""The out-of-scope scores: higher = further from the in-scope training data.

Each score is fitted once after training and then reads a batch's logits and pooled features
(inference.backends.base.Outputs). Only in-scope classes take part: the out-of-scope label's logit
column and its training examples are left out (out-of-scope messages have no single mode to model).

- ``msp_temperature``: minus the largest softmax probability of logits / T, T fitted on the in-scope
  validation messages by negative log-likelihood (Guo et al., 2017);
- ``energy``: minus logsumexp of the logits (Liu et al., 2020);
- ``mahalanobis``: the smallest squared Mahalanobis distance of the features to a class mean, one shared
  covariance (Lee et al., 2018), estimated with Ledoit-Wolf shrinkage (scikit-learn; 384 dimensions from
  ~100 examples a class need it) and every variance floored at VARIANCE_FLOOR x the mean (int8 robustness);
- ``knn``: one minus the cosine similarity to the k-th nearest training feature, features L2-normalised
  (Sun et al., 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KNN_K = 10
"""Neighbours for the kNN score (the k-th one's similarity is the score)."""
VARIANCE_FLOOR = 0.01
"""Mahalanobis: the smallest variance a direction may have, as a share of the mean variance (floored_precision)."""
MAX_BANK = 20_000
"""Most training features a kNN bank keeps (a seeded sample beyond): the bank ships inside the model."""


@dataclass
class FitData:
    """What a score is fitted on: training features and their class indices (in-scope rows only), and
    the in-scope validation logits with their class indices; ``in_scope`` = the model's in-scope class indices."""

    in_scope: np.ndarray
    train_features: np.ndarray | None
    train_labels: np.ndarray
    val_logits: np.ndarray
    val_labels: np.ndarray


class Score:
    """One fitted score: ``score(logits, features)`` -> (n,) float64, plus what it saves."""

    name = ""
    needs_features = False

    def __init__(self, in_scope: np.ndarray, params: dict, arrays: dict[str, np.ndarray]):
        self.in_scope = np.asarray(in_scope, dtype=np.int64)
        self.params = params
        self.arrays = arrays

    @classmethod
    def fit(cls, data: FitData) -> "Score":
        raise NotImplementedError

    def score(self, logits: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the negative log-likelihood of softmax(logits / T) (bounded search over log T)."""
    from scipy.optimize import minimize_scalar

    z = logits.astype(np.float64)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-_log_softmax(z / np.exp(log_t))[rows, labels].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


class MSPTemperature(Score):
    name = "msp_temperature"

    @classmethod
    def fit(cls, data: FitData) -> "MSPTemperature":
        t = fit_temperature(data.val_logits[:, data.in_scope], data.val_labels) if len(data.val_labels) else 1.0
        return cls(data.in_scope, {"temperature": t}, {})

    def score(self, logits, features):
        z = logits[:, self.in_scope].astype(np.float64) / self.params["temperature"]
        return -np.exp(_log_softmax(z).max(axis=1))


class MSP(MSPTemperature):
    """The plain softmax threshold (T = 1): the baseline, not offered as a rule."""

    name = "msp"

    @classmethod
    def fit(cls, data: FitData) -> "MSP":
        return cls(data.in_scope, {"temperature": 1.0}, {})


class Energy(Score):
    name = "energy"

    @classmethod
    def fit(cls, data: FitData) -> "Energy":
        return cls(data.in_scope, {}, {})

    def score(self, logits, features):
        z = logits[:, self.in_scope].astype(np.float64)
        top = z.max(axis=1)
        return -(top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


class Mahalanobis(Score):
    name = "mahalanobis"
    needs_features = True

    @classmethod
    def fit(cls, data: FitData) -> "Mahalanobis":
        from sklearn.covariance import LedoitWolf

        x = data.train_features.astype(np.float64)
        classes = np.unique(data.train_labels)
        means = np.stack([x[data.train_labels == c].mean(axis=0) for c in classes])
        centred = x - means[np.searchsorted(classes, data.train_labels)]
        return cls(data.in_scope, {"variance_floor": VARIANCE_FLOOR},
                   {"means": means, "precision": floored_precision(LedoitWolf(assume_centered=True).fit(centred).covariance_)})

    def score(self, logits, features):
        if not hasattr(self, "_mean_norms"):  # fixed per model: most of a 1-message call (0.58 -> 0.04 ms)
            self._mean_norms = mean_norms(self.arrays["means"], self.arrays["precision"])
        return mahalanobis_min(features, self.arrays["means"], self.arrays["precision"], self._mean_norms)


def floored_precision(cov: np.ndarray, floor: float = VARIANCE_FLOOR) -> np.ndarray:
    """The inverse of ``cov`` with its eigenvalues raised to at least ``floor`` x their mean. Pooled features
    barely vary along some directions; without a floor their inverse variance turns int8's tiny feature
    drift (cosine 0.9999) into distances many times the threshold, so an int8 export would decide otherwise."""
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, floor * values.mean())
    return (vectors / values) @ vectors.T


def mean_norms(means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(m,) mu^T P mu for each mean: the part of every distance that does not depend on the input."""
    return ((means @ precision) * means).sum(axis=1)


def mahalanobis_pairwise(x: np.ndarray, means: np.ndarray, precision: np.ndarray,
                         norms: np.ndarray | None = None) -> np.ndarray:
    """(n, m) squared distances (x - mu)^T P (x - mu), as x P x - 2 x P mu + mu P mu (one matmul per batch);
    ``norms``: `mean_norms(means, precision)`, when the caller keeps it."""
    x = x.astype(np.float64)
    xp = x @ precision
    norms = mean_norms(means, precision) if norms is None else norms
    d = (xp * x).sum(axis=1)[:, None] - 2.0 * xp @ means.T + norms[None, :]
    return np.maximum(d, 0.0)


def mahalanobis_min(x: np.ndarray, means: np.ndarray, precision: np.ndarray,
                    norms: np.ndarray | None = None) -> np.ndarray:
    """min over classes of the squared Mahalanobis distance."""
    return mahalanobis_pairwise(x, means, precision, norms).min(axis=1)


def normalise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class KNN(Score):
    name = "knn"
    needs_features = True

    @classmethod
    def fit(cls, data: FitData, k: int = KNN_K, seed: int = 0) -> "KNN":
        bank = data.train_features
        if len(bank) > MAX_BANK:
            bank = bank[np.sort(np.random.default_rng(seed).choice(len(bank), MAX_BANK, replace=False))]
        return cls(data.in_scope, {"k": int(min(k, len(bank)))}, {"bank": normalise(bank)})

    def score(self, logits, features):
        sims = normalise(features) @ self.arrays["bank"].T
        k = self.params["k"]
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
        return 1.0 - kth.astype(np.float64)


SCORE_CLASSES: dict[str, type[Score]] = {c.name: c for c in (MSPTemperature, Energy, Mahalanobis, KNN)}
"""The selectable scores by name (acceltune.oos.SCORES, in the same order)."""
