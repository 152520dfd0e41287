"""Which fixed logit-adjustment tau suits a finished CV's fold models, negative ones included?
Each fold model scores its held-out photos again, its own adjustment is taken back out
(posthoc.unadjusted_scores), and every tau of the grid is applied to all folds alike; then the
cross-fitted choice on the usual grid (0 to 1) and on one that also runs below 0.

Run: .venv/bin/python bench/cv_fixed_taus.py CV_DIR   (e.g. runs/cv17-sqrt)
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.metrics import f1_score

from wardrobe.evaluation.cv import open_cv_photos
from wardrobe.inference import Classifier
from wardrobe.metrics import softmax
from wardrobe.training.posthoc import TAUS, adjustment, cross_fitted, unadjusted_scores

GRID = (-0.75, -0.5, -0.25, 0.0, 0.25, 0.5)
BOTH_WAYS = (0.0, -0.25, -0.5, 0.25, 0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cv_dir")
    args = ap.parse_args()
    cv, y, _, paths, folds = open_cv_photos(args.cv_dir)
    k = len(cv["classes"])
    rows = {t: [] for t in GRID}
    fitted = {TAUS: [], BOTH_WAYS: []}

    def score(yv, pred):
        return (pred == yv).mean(), f1_score(yv, pred, average="macro", labels=np.arange(k), zero_division=0)

    for i, (tr, va) in enumerate(folds, 1):
        fold = f"{args.cv_dir}/fold-{i}"
        tau = json.loads(open(f"{fold}/config.json").read())["logit_adjustment"]["tau"]
        clf = Classifier.load(fold)
        counts = np.bincount(y[tr], minlength=k)
        probs = clf.predict_proba([paths[j] for j in va], show_progress=False)[0]
        z = unadjusted_scores(probs, clf.temperature, counts, tau)
        for t in GRID:
            rows[t].append(score(y[va], (z + adjustment(counts, t)).argmax(1)))
        for taus, out in fitted.items():
            out.append(score(y[va], cross_fitted(softmax(z), y[va], counts, taus)[0].argmax(1)))
    for t in GRID:
        a, f = np.mean(rows[t], axis=0)
        print(f"fixed tau {t:+.2f}: accuracy {a:.4f}, macro-F1 {f:.4f}")
    for taus, out in fitted.items():
        a, f = np.mean(out, axis=0)
        print(f"cross-fitted over {taus}: accuracy {a:.4f}, macro-F1 {f:.4f}")


if __name__ == "__main__":
    main()
