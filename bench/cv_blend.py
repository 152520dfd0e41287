"""Does averaging two recipes help a cross-validation? Two finished CVs of the same data, folds and
seed (e.g. the best preset's and the probe's: `wardrobe cv clothing-17 --folds 5 --out runs/cv17-probe`)
are mixed photo by photo from their out-of-fold probabilities, weight w on the second, arithmetic
and geometric means, then with a logit adjustment of the mix (tau, train-fold prior). Fold means
of accuracy and macro-F1; no new inference.

Run: .venv/bin/python bench/cv_blend.py CV_A CV_B   (e.g. runs/cv17-best17 runs/cv17-probe)
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import f1_score

from wardrobe.evaluation.cv import make_folds, open_cv
from wardrobe.training.posthoc import adjustment

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cv_a")
    ap.add_argument("cv_b")
    args = ap.parse_args()
    cv, labels, y, a = open_cv(args.cv_a)
    cv_b, _, y_b, b = open_cv(args.cv_b)
    if (cv["folds"], cv["seed"]) != (cv_b["folds"], cv_b["seed"]) or not np.array_equal(y, y_b):
        raise SystemExit(f"{args.cv_a} and {args.cv_b} are not the same folds of the same photos")
    k, folds = a.shape[1], list(make_folds(labels, cv["folds"], cv["seed"]))

    def fold_means(logp: np.ndarray, tau: float = 0.0) -> tuple[float, float]:
        rows = []
        for tr, va in folds:
            pred = (logp[va] + adjustment(np.bincount(y[tr], minlength=k), tau)).argmax(1)
            rows.append(((pred == y[va]).mean(), f1_score(y[va], pred, average="macro", labels=np.arange(k),
                                                          zero_division=0)))
        return tuple(np.mean(rows, axis=0))

    la, lb = np.log(np.clip(a, 1e-12, None)), np.log(np.clip(b, 1e-12, None))
    print("| weight on B | arithmetic: accuracy / macro-F1 | geometric | arithmetic, tau 0.25 | arithmetic, tau 0.5 |")
    print("| --- | --- | --- | --- | --- |")
    for w in WEIGHTS:
        arith = np.log(np.clip((1 - w) * a + w * b, 1e-12, None))
        cells = [fold_means(arith), fold_means((1 - w) * la + w * lb), fold_means(arith, 0.25), fold_means(arith, 0.5)]
        print(f"| {w} | " + " | ".join(f"{acc:.4f} / {f1:.4f}" for acc, f1 in cells) + " |")


if __name__ == "__main__":
    main()
