""""Unknown": photos unlike every class the model was trained on. The score is the cosine distance
from a photo's embedding (the network's pooled features) to its k-th nearest training photo, so a
photo far from all training photos is unknown whatever its softmax says. The threshold is fitted on
known-class validation photos only, at a stated false-unknown rate (the share of known photos that
would be called unknown). bench/unknown.py compares this with max-probability, energy and
Mahalanobis scores (README, "Unknown photos")."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

BANK_LIMIT = 4096  # training embeddings kept in the model file (a random subset above this)
DEFAULT_K = 1
FALSE_UNKNOWN = 0.05


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def make_bank(train_embeddings: np.ndarray, limit: int = BANK_LIMIT, seed: int = 0) -> np.ndarray:
    bank = normalise(train_embeddings)
    if len(bank) > limit:
        bank = bank[np.sort(np.random.default_rng(seed).choice(len(bank), limit, replace=False))]
    return bank.astype(np.float16)


def knn_scores(bank: np.ndarray, embeddings: np.ndarray, k: int = DEFAULT_K, chunk: int = 1024) -> np.ndarray:
    """1 - cosine similarity to the k-th nearest bank embedding (higher: more unknown)."""
    bank32 = np.asarray(bank, dtype=np.float32)
    q = normalise(embeddings)
    k = max(1, min(k, len(bank32)))
    out = np.empty(len(q), dtype=np.float32)
    # One BLAS thread: a batch's search takes milliseconds, and OpenBLAS's worker threads would
    # keep spinning afterwards on the 2 cores ONNX Runtime needs next (label ran at 0.86 of
    # predict's speed with them, bench/label_speed.py).
    with threadpool_limits(limits=1, user_api="blas"):
        for s in range(0, len(q), chunk):
            sims = q[s:s + chunk] @ bank32.T
            out[s:s + chunk] = 1.0 - np.partition(sims, -k, axis=1)[:, -k]
    return out


def fit_unknown(bank: np.ndarray, val_embeddings: np.ndarray, rate: float = FALSE_UNKNOWN, k: int = DEFAULT_K) -> dict:
    """The threshold that calls ``rate`` of the known validation photos unknown."""
    scores = knn_scores(bank, val_embeddings, k)
    threshold = float(np.quantile(scores, 1 - rate, method="higher")) if len(scores) else float("inf")
    return {"score": "knn_cosine_distance", "k": k, "threshold": threshold, "false_unknown_target": rate,
            "fitted_on": "validation", "n_validation": int(len(scores)), "bank": int(len(bank))}


def energy(logits: np.ndarray) -> np.ndarray:
    """Negative free energy, -logsumexp(logits) (Liu et al. 2020; higher: more unknown)."""
    m = logits.max(1, keepdims=True)
    return -(m[:, 0] + np.log(np.exp(logits - m).sum(1)))


def unknown_rates(known_scores: np.ndarray, unknown_scores: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import roc_auc_score  # heavy: scikit-learn, only when scoring unknown photos

    y = np.r_[np.zeros(len(known_scores)), np.ones(len(unknown_scores))]
    s = np.r_[known_scores, unknown_scores]
    auroc = float(roc_auc_score(y, s)) if len(known_scores) and len(unknown_scores) else None
    return {"auroc": auroc, "detected": float((unknown_scores > threshold).mean()) if len(unknown_scores) else None,
            "false_unknown": float((known_scores > threshold).mean()) if len(known_scores) else None,
            "threshold": threshold, "n_known": int(len(known_scores)), "n_unknown": int(len(unknown_scores))}
