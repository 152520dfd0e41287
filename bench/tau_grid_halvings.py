"""Does the tau search pay after a sampler? Regrades each fold of a finished network CV from its saved
scores (validation_graded.npz, every epoch's) with the epoch and tau cross-fitted, once on the full
grid (0 to 1, the rule before session 27) and once on the grid training uses today
(posthoc.taus_for: after square-root sampling only tau 0). One stratified halving of 931 photos is
a noisy draw, so each fold is graded over --halvings different halvings and their mean printed,
then the mean over the folds. The training counts are the dataset's class counts less the fold's.

Run: .venv/bin/python bench/tau_grid_halvings.py CV_DIR [--halvings 10]   (e.g. runs/cv17-fdw)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.training.posthoc import TAUS, cross_fitted_run, macro_f1, taus_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cv_dir", type=Path)
    ap.add_argument("--halvings", type=int, default=10)
    args = ap.parse_args()
    cv = json.loads((args.cv_dir / "cv.json").read_text())
    classes = cv["classes"]
    k = len(classes)
    total = np.array([load_dataset(cv["data"]).class_counts()[c] for c in classes])
    rows = []
    for fold in sorted(args.cv_dir.glob("fold-*"), key=lambda p: int(p.name.split("-")[1])):
        config = json.loads((fold / "config.json").read_text())
        with np.load(fold / "validation_graded.npz", allow_pickle=False) as z:
            y, epochs = z["labels"], [p.astype(np.float64) for p in z["epoch_probs"]]
        counts = total - np.bincount(y, minlength=k)
        today = taus_for(config.get("fit", {}).get("loss", "ce"), config.get("sampler", "none"))
        row = []
        for taus in (TAUS, today):
            acc, f1 = [], []
            for seed in range(args.halvings):
                pred = cross_fitted_run(epochs, y, counts, taus, seed=seed)[0].argmax(1)
                acc.append(float((pred == y).mean()))
                f1.append(macro_f1(y, pred, k))
            row += [np.mean(acc), np.mean(f1)]
        rows.append(row)
        print(f"{fold.name}: grid {TAUS} {row[0]:.4f} / {row[1]:.4f}; today's grid {today} {row[2]:.4f} / {row[3]:.4f}")
    r = np.array(rows).mean(0)
    print(f"mean over {len(rows)} folds, {args.halvings} halvings each: full grid {r[0]:.4f} / {r[1]:.4f}; "
          f"today's grid {r[2]:.4f} / {r[3]:.4f} (accuracy / macro-F1)")


if __name__ == "__main__":
    main()
