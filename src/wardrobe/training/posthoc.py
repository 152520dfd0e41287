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


# Drawing classes by the square root of their counts gives the best macro-F1 without any adjustment
# (the tau search keeps 0 after it; docs/benchmarks.md, session 20).
SQRT_EXPONENT = SAMPLER_EXPONENTS["sqrt"]


def taus_for(loss: str, sampler: str = "none") -> tuple[float, ...]:
    """The tau grid of the post-hoc search for a network trained with ``loss`` and ``sampler``. A
    sampler that favours rare classes more than the square root does has built in more tilt than
    macro-F1 wants: its grid starts by taking the excess back (a negative tau), listed first."""
    if loss == "balanced":
        return TAUS_AFTER_BALANCED
    excess = max(0.0, SQRT_EXPONENT - SAMPLER_EXPONENTS.get(sampler, 1.0))
    return tuple(round(t - excess, 4) for t in TAUS)


def adjustment(train_counts: np.ndarray, tau: float) -> np.ndarray:
    prior = np.maximum(np.asarray(train_counts, dtype=np.float64), 1) / max(1, np.sum(train_counts))
    bias = -tau * np.log(prior)
    return (bias - bias.mean()).astype(np.float32)  # a constant shift changes nothing; keep it centred


def unadjusted_scores(probs: np.ndarray, temperature: float, train_counts: np.ndarray, tau: float) -> np.ndarray:
    """A logit-adjusted model's scores before its adjustment (up to a constant per photo): its
    calibrated probabilities are softmax((z + b) / T), so z = T log p - b."""
    return temperature * np.log(np.clip(probs, 1e-12, None)) - adjustment(train_counts, tau)


def fit_logit_adjustment(val_probs: np.ndarray, val_labels: np.ndarray, train_counts: np.ndarray,
                         taus=TAUS) -> tuple[float, np.ndarray, list[dict]]:
    """(tau, per-class bias to add to the logits, the search) maximising validation macro-F1; ties go
    to the tau listed first (the least change to the trained model)."""
    logp = np.log(np.clip(val_probs, 1e-12, None))
    labels = np.arange(val_probs.shape[1])
    best, search = None, []
    for tau in taus:
        bias = adjustment(train_counts, tau)
        pred = (logp + bias).argmax(1)
        f1 = float(f1_score(val_labels, pred, labels=labels[np.isin(labels, np.union1d(val_labels, pred))],
                            average="macro", zero_division=0))
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
    val_labels = np.asarray(val_labels)
    logp = np.log(np.clip(val_probs, 1e-12, None))
    if len(val_labels) < 4:  # too few photos to halve: the plain fit is all there is
        tau, bias, _ = fit_logit_adjustment(val_probs, val_labels, train_counts, taus)
        return softmax(logp + bias), [tau]
    out, chosen = np.empty_like(logp), []
    with warnings.catch_warnings():  # a class with one validation photo cannot be in both halves; fine
        warnings.simplefilter("ignore", UserWarning)
        halves = list(StratifiedKFold(2, shuffle=True, random_state=seed).split(logp, val_labels))
    for fit_idx, apply_idx in halves:
        tau, bias, _ = fit_logit_adjustment(val_probs[fit_idx], val_labels[fit_idx], train_counts, taus)
        out[apply_idx] = logp[apply_idx] + bias
        chosen.append(tau)
    return softmax(out), chosen
