"""How much a corruption (default Gaussian noise sigma 0.1) costs a cross-validation's fold models
on their own held-out photos: every photo of the data is scored once, clean and corrupted, by the
model that did not train on it. A wider figure than one validation split's (4,655 photos on
clothing-17 instead of 931). The clean accuracy here is the fold models' own (their tau, no
cross-fitting), so it can differ a little from the CV's graded figure.

Run: .venv/bin/python bench/cv_noise.py CV_DIR [--seeds 1]   (e.g. runs/cv17-sqrt)
"""

from __future__ import annotations

import argparse

import numpy as np

from wardrobe.evaluation.cv import open_cv_photos
from wardrobe.evaluation.robustness import CORRUPTIONS, robustness
from wardrobe.inference import Classifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cv_dir")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--corruption", default="gaussian_noise_0.1", choices=list(CORRUPTIONS))
    args = ap.parse_args()
    _, y, _, paths, folds = open_cv_photos(args.cv_dir)
    clean, noisy, total = np.zeros(args.seeds), np.zeros(args.seeds), 0
    for i, (_, va) in enumerate(folds, 1):
        clf = Classifier.load(f"{args.cv_dir}/fold-{i}")
        for seed in range(args.seeds):
            res = robustness(clf, [paths[j] for j in va], y[va], [args.corruption], seed=seed, show_progress=False)
            n = res["n_images"]  # photos that decoded
            total += n if seed == 0 else 0
            clean[seed] += res["clean"]["accuracy"] * n
            noisy[seed] += res["corruptions"][args.corruption]["accuracy"] * n
            print(f"fold {i}, noise seed {seed}: clean {res['clean']['accuracy']:.4f} -> "
                  f"{res['corruptions'][args.corruption]['accuracy']:.4f}", flush=True)
    drops = 100 * (clean - noisy) / total
    print(f"{args.corruption} over all {total} held-out photos: clean {clean.mean() / total:.4f}, "
          f"corrupted {noisy.mean() / total:.4f}, {drops.mean():.2f} points lost"
          + (f" (per noise seed: {', '.join(f'{d:.2f}' for d in drops)})" if args.seeds > 1 else ""))


if __name__ == "__main__":
    main()
