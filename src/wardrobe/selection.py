"""Selective labelling: which of a model's labels to trust. A photo is auto-labelled when its
top probability reaches the threshold of its predicted class; thresholds are fitted on validation
photos for a target precision (the share of auto-labels that are right).

Two rules (README, "Trusted labels"), both stored in the model file. The default: the threshold is
the lowest at which the validation photos it accepts reach the target precision. The conservative
one (``wardrobe label --conservative``) counts one extra error, the finite-sample correction of
conformal risk control: on photos exchangeable with the validation photos the expected precision
of the accepted photos is then at least about the target, at the price of coverage
(bench/trusted_labels.py measures both). A class gets its own threshold where it has enough
validation predictions for one (``2 / (1 - target)``), else the global one.
"""

from __future__ import annotations

import numpy as np

TARGETS = (0.9, 0.95, 0.97, 0.98, 0.99)
NEVER = 1.01  # a threshold no probability reaches


def _threshold(conf: np.ndarray, correct: np.ndarray, target: float, extra: int = 1) -> float:
    """Lowest confidence threshold whose accepted set passes the error-rate test, counting ``extra``
    errors more than it has (1: the conservative rule, 0: the plain one)."""
    if len(conf) == 0:
        return NEVER
    order = np.argsort(-conf, kind="stable")
    c, ok = conf[order], correct[order]
    errors = np.cumsum(~ok)
    n = np.arange(1, len(c) + 1)
    passes = (errors + extra) / (n + extra) <= 1 - target + 1e-12
    # only cut between distinct confidences: ties are accepted or refused together
    last_of_tie = np.r_[c[1:] != c[:-1], True]
    good = np.flatnonzero(passes & last_of_tie)
    if len(good) == 0:
        return NEVER
    # the largest accepted set that passes; the whole prefix need not pass at every smaller size
    return float(c[good[-1]])


def fit_thresholds(probs: np.ndarray, labels: np.ndarray, classes: list[str], targets=TARGETS) -> dict:
    """{"targets": {"0.98": {"global": t, "per_class": {class: t}}}, "conservative": {...}, "n":
    photos} from validation probabilities and true class indices."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    pred, conf = probs.argmax(1), probs.max(1)
    correct = pred == labels
    out: dict = {"n": int(len(labels)), "targets": {}, "conservative": {}}
    for key, extra in (("targets", 0), ("conservative", 1)):
        for target in targets:
            glob = _threshold(conf, correct, target, extra)
            per_class = {}
            for k, name in enumerate(classes):
                mine = pred == k
                per_class[name] = (_threshold(conf[mine], correct[mine], target, extra)
                                   if mine.sum() >= 2 / (1 - target) else glob)
            out[key][f"{target:g}"] = {"global": glob, "per_class": per_class}
    return out


def fitted_selection(probs: np.ndarray, labels: np.ndarray, classes: list[str], temperature: float) -> dict:
    """What a model file stores: the thresholds fitted on validation photos whose ``probs`` were
    computed at ``temperature`` (a model whose temperature changes must refit them)."""
    return {**fit_thresholds(probs, labels, classes), "fitted_on": "validation", "temperature": temperature}


def thresholds_for(selection: dict | None, target: float, conservative: bool = False) -> dict[str, float] | None:
    """The per-class thresholds stored for ``target``, or None when none were fitted for it."""
    if not selection:
        return None
    entry = selection.get("conservative" if conservative else "targets", {}).get(f"{target:g}")
    return dict(entry["per_class"]) if entry else None


def accept(probs: np.ndarray, classes: list[str], thresholds: dict[str, float]) -> np.ndarray:
    """Boolean mask of the photos whose top probability reaches their predicted class's threshold."""
    pred, conf = probs.argmax(1), probs.max(1)
    limits = np.array([thresholds.get(c, NEVER) for c in classes])
    return conf >= limits[pred]


def coverage_precision(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, precision) of accepting the k most confident photos, for k = 1..N."""
    conf = np.asarray(probs).max(1)
    correct = np.asarray(probs).argmax(1) == np.asarray(labels)
    order = np.argsort(-conf, kind="stable")
    ok = correct[order]
    n = np.arange(1, len(ok) + 1)
    return n / max(1, len(ok)), np.cumsum(ok) / n


def coverage_at(probs: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The largest share of photos that one threshold for every class can auto-label at ``target``
    precision on these very photos (an oracle figure: it is chosen on the photos it is scored on)."""
    cov, prec = coverage_precision(probs, labels)
    ok = np.flatnonzero(prec >= target)
    return float(cov[ok[-1]]) if len(ok) else 0.0
