"""Post-hoc logit adjustment for imbalanced classes (Menon et al., ICLR 2021): subtract
``tau * log(prior)`` from the logits, so rare classes are no longer out-voted by frequent ones.
One number, ``tau``, is chosen on validation for macro-F1, which keeps the fit steady where a free
bias per class would chase a validation set's noise; on balanced data the prior is flat and the
adjustment is nothing."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from wardrobe.metrics import softmax
from wardrobe.training.config import SAMPLER_EXPONENTS

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)
# A network trained with balanced softmax already scores for a balanced world (tau 1 built in); the
# search then runs the other way, giving back part of the prior for accuracy. 0 first: ties keep it.
TAUS_AFTER_BALANCED = (0.0, -0.25, -0.5, -0.75, -1.0)


# Drawing classes by the square root of their counts gives the best macro-F1 without any adjustment:
# tau 0 is the peak of fixed taus on two clothing-17 CVs (docs/benchmarks.md, sessions 20 and 27).
SQRT_EXPONENT = SAMPLER_EXPONENTS["sqrt"]


def taus_for(loss: str, sampler: str = "none") -> tuple[float, ...]:
    """The tau grid of the post-hoc search for a network trained with ``loss`` and ``sampler``.
    After a sampler that draws rare classes more often the grid stops at 0: the square root already
    tilts as far as macro-F1 wants, so a search that could tilt further only adds the noise of a
    choice made on few rare photos. A sampler that favours rare classes more than the square root
    has built in too much tilt: its grid takes the excess back (negative taus, the most first)."""
    if loss == "balanced":
        return TAUS_AFTER_BALANCED
    exponent = SAMPLER_EXPONENTS.get(sampler, 1.0)
    if exponent >= 1:
        return TAUS
    excess = max(0.0, SQRT_EXPONENT - exponent)
    return tuple(t for t in (round(t - excess, 4) for t in TAUS) if t <= 0)


def adjustment(train_counts: np.ndarray, tau: float) -> np.ndarray:
    prior = np.maximum(np.asarray(train_counts, dtype=np.float64), 1) / max(1, np.sum(train_counts))
    bias = -tau * np.log(prior)
    return (bias - bias.mean()).astype(np.float32)  # a constant shift changes nothing; keep it centred


def unadjusted_scores(probs: np.ndarray, temperature: float, train_counts: np.ndarray, tau: float) -> np.ndarray:
    """A logit-adjusted model's scores before its adjustment (up to a constant per photo): its
    calibrated probabilities are softmax((z + b) / T), so z = T log p - b."""
    return temperature * np.log(np.clip(probs, 1e-12, None)) - adjustment(train_counts, tau)


def macro_f1(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Macro-F1 over the classes present in the labels or the predictions."""
    k = np.arange(num_classes)
    return float(f1_score(labels, pred, labels=k[np.isin(k, np.union1d(labels, pred))], average="macro",
                          zero_division=0))


def fit_logit_adjustment(val_probs: np.ndarray, val_labels: np.ndarray, train_counts: np.ndarray,
                         taus=TAUS) -> tuple[float, np.ndarray, list[dict]]:
    """(tau, per-class bias to add to the logits, the search) maximising validation macro-F1; ties go
    to the tau listed first (the least change to the trained model)."""
    logp = np.log(np.clip(val_probs, 1e-12, None))
    best, search = None, []
    for tau in taus:
        bias = adjustment(train_counts, tau)
        pred = (logp + bias).argmax(1)
        f1 = macro_f1(val_labels, pred, val_probs.shape[1])
        acc = float((pred == val_labels).mean())
        search.append({"tau": tau, "val_f1_macro": round(f1, 5), "val_accuracy": round(acc, 5)})
        if best is None or f1 > best[0] + 1e-9:
            best = (f1, tau, bias)
    return best[1], best[2], search


def cross_fitted(val_probs: np.ndarray, val_labels: np.ndarray, train_counts: np.ndarray, taus=TAUS,
                 seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Validation probabilities adjusted without grading tau on the photos it was chosen on: the
    validation photos are split in two stratified halves and each half gets the tau the other half
    chose. The model keeps the tau of the whole validation set; these probabilities are what its
    validation figures are computed from (in a CV the validation fold is the reported one, and a
    tau picked on it reads high). Returns (adjusted probabilities, the two halves' taus)."""
    graded, chosen = cross_fitted_run([val_probs], val_labels, train_counts, taus, seed)
    return graded, [tau for _, tau in chosen]


def cross_fitted_run(epoch_probs: list[np.ndarray], val_labels: np.ndarray, train_counts: np.ndarray,
                     taus=(0.0,), seed: int = 0) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """A run's validation probabilities graded without any choice made on the photos they grade.
    Training picks the epoch with the best validation macro-F1 and then, with that epoch's scores,
    the tau; a CV reports that same validation fold, so both choices would read high. Each of two
    stratified halves of the photos gets the epoch and the tau the other half picks by the same
    rule (ties: the earlier epoch, the tau listed first). Returns (probabilities, [(epoch index,
    tau)] of the two halves; one pair when there are too few photos to halve)."""
    val_labels = np.asarray(val_labels)
    logps = [np.log(np.clip(p, 1e-12, None)) for p in epoch_probs]
    k = logps[0].shape[1]

    def choose(idx):
        scores = [macro_f1(val_labels[idx], lp[idx].argmax(1), k) for lp in logps]
        e = int(np.argmax(np.asarray(scores) > max(scores) - 1e-9))  # the first epoch within rounding of the best
        tau, bias, _ = fit_logit_adjustment(epoch_probs[e][idx], val_labels[idx], train_counts, taus)
        return e, tau, bias

    if len(val_labels) < 4:  # too few photos to halve: the plain choice is all there is
        e, tau, bias = choose(np.arange(len(val_labels)))
        return softmax(logps[e] + bias), [(e, tau)]
    out, chosen = np.empty_like(logps[-1]), []
    with warnings.catch_warnings():  # a class with one validation photo cannot be in both halves; fine
        warnings.simplefilter("ignore", UserWarning)
        halves = list(StratifiedKFold(2, shuffle=True, random_state=seed).split(logps[-1], val_labels))
    for fit_idx, apply_idx in halves:
        e, tau, bias = choose(fit_idx)
        out[apply_idx] = logps[e][apply_idx] + bias
        chosen.append((e, tau))
    return softmax(out), chosen
