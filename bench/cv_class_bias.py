"""A free per-class bias on the logits, fitted for macro-F1, against the single logit-adjustment tau
the best preset fits (training/posthoc.py). Measured without a leak on a finished cross-validation's
out-of-fold probabilities: the bias for fold k is fitted on the other folds' photos (coordinate
ascent, a grid of -2..2 per class, three rounds) and scored on fold k. With --in-sample it also
prints a ceiling no post-hoc bias can beat: one bias fitted on every photo (each fold's own
included) and scored on each fold.

Run: .venv/bin/python bench/cv_class_bias.py CV_DIR [--in-sample]   (e.g. runs/cv17-best16, from `wardrobe cv`)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from wardrobe.evaluation.cv import make_folds, open_cv


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    return float(f1_score(y, pred, average="macro", labels=np.arange(k), zero_division=0))


def fit_bias(logp: np.ndarray, y: np.ndarray, rounds: int = 3, grid=np.linspace(-2, 2, 41)) -> np.ndarray:
    k = logp.shape[1]
    bias = np.zeros(k)
    for _ in range(rounds):
        for c in range(k):
            best = (macro_f1(y, (logp + bias).argmax(1), k), bias[c])
            for g in grid:
                trial = bias.copy()
                trial[c] = g
                score = macro_f1(y, (logp + trial).argmax(1), k)
                if score > best[0] + 1e-9:
                    best = (score, g)
            bias[c] = best[1]
    return bias


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cv_dir", type=Path)
    ap.add_argument("--in-sample", action="store_true", help="also the ceiling: one bias fitted on every photo")
    args = ap.parse_args()
    cv, labels, y, oof = open_cv(args.cv_dir)
    logp, k, rows = np.log(np.clip(oof, 1e-12, None)), oof.shape[1], []
    for fold, (tr, va) in enumerate(make_folds(labels, cv["folds"], cv["seed"]), start=1):
        pred = (logp[va] + fit_bias(logp[tr], y[tr])).argmax(1)
        rows.append((macro_f1(y[va], logp[va].argmax(1), k), macro_f1(y[va], pred, k), float((pred == y[va]).mean())))
        print(f"fold {fold}: macro-F1 {rows[-1][0]:.4f} as trained -> {rows[-1][1]:.4f} with the cross-fitted bias "
              f"(accuracy {rows[-1][2]:.4f})")
    a = np.array(rows)
    print(f"mean: macro-F1 {a[:, 0].mean():.4f} -> {a[:, 1].mean():.4f}, accuracy with the bias {a[:, 2].mean():.4f}")
    if args.in_sample:
        bias = fit_bias(logp, y)
        pred = (logp + bias).argmax(1)
        folds = make_folds(labels, cv["folds"], cv["seed"])
        f1s = [macro_f1(y[va], pred[va], k) for _, va in folds]
        accs = [float((pred[va] == y[va]).mean()) for _, va in folds]
        print(f"in-sample ceiling (one bias fitted on every photo, {np.round(bias, 2).tolist()}): "
              f"macro-F1 {np.mean(f1s):.4f} (folds {', '.join(f'{f:.4f}' for f in f1s)}), accuracy {np.mean(accs):.4f}")


if __name__ == "__main__":
    main()
