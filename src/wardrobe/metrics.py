"""Classification metrics from true labels and predicted probabilities (scikit-learn underneath)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from wardrobe.errors import WardrobeError


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities from logits (rows) divided by ``temperature``: the one softmax of the
    package (float64, so temperature fitting sees no rounding)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """``y_true``: class indices into ``classes``; ``probs``: [N, len(classes)].

    Macro averages run over the classes that occur in the truth or the predictions (a class the
    model never predicts but that is present counts as F1 0). mAP averages one-vs-rest average
    precision over the classes present in the truth; AP is undefined for the others.
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    if len(y_true) == 0:
        raise ValueError("no images to evaluate")
    y_pred = probs.argmax(1)
    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    prec, rec, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=list(range(k)),
                                                             zero_division=0)
    ap = np.full(k, np.nan)
    for c in range(k):
        positives = y_true == c
        if positives.any():
            ap[c] = average_precision_score(positives, probs[:, c])
    topk = min(3, k)
    top3 = np.argsort(-probs, axis=1)[:, :topk]
    cm = confusion_matrix(y_true, y_pred, labels=list(range(k)))
    return {
        "n_images": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "map_macro": float(np.nanmean(ap)),
        "top3_accuracy": float((top3 == y_true[:, None]).any(1).mean()),
        "per_class": {
            classes[c]: {"precision": float(prec[c]), "recall": float(rec[c]), "f1": float(f1[c]),
                         "support": int(support[c]), "ap": None if np.isnan(ap[c]) else float(ap[c])}
            for c in range(k)
        },
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }


SUMMARY_KEYS = ("accuracy", "f1_macro", "f1_weighted", "map_macro", "top3_accuracy", "n_images")


def summary(metrics: dict) -> dict:
    return {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    p = softmax(logits, temperature)
    return float(-np.log(np.clip(p[np.arange(len(y_true)), y_true], 1e-300, None)).mean())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of softmax(logits / T)."""
    from scipy.optimize import minimize_scalar  # heavy: scipy, only when fitting a temperature

    logits = np.asarray(logits, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=int)
    if len(y_true) == 0:
        raise WardrobeError("cannot fit a temperature on no photos")
    # Searching log T keeps T positive and treats halving and doubling alike.
    res = minimize_scalar(lambda t: nll(logits, y_true, float(np.exp(t))), bounds=(np.log(0.05), np.log(20.0)),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))
