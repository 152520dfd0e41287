"""How much of a robustness figure is the noise draw: the accuracy a model loses to one corruption
(default Gaussian noise sigma 0.1), under several seeds of its random noise, on the same photos.
`wardrobe evaluate --robustness` reports seed 0 only; on 341 photos one photo is 0.29 points.

Run: .venv/bin/python bench/noise_seeds.py RUN DATA [--split validation] [--seeds 5] [--tta]
     (e.g. runs/best clothing-top10; --tta: each photo and its mirror image, averaged)
"""

from __future__ import annotations

import argparse

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.evaluation.evaluate import _own_split
from wardrobe.evaluation.robustness import CORRUPTIONS, robustness
from wardrobe.inference import Classifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--corruption", default="gaussian_noise_0.1", choices=list(CORRUPTIONS))
    ap.add_argument("--tta", action="store_true")
    args = ap.parse_args()
    clf = Classifier.load(args.run, tta=args.tta)
    ds = _own_split(load_dataset(args.data), clf, args.split, args.data)  # a ratio split: the run's own
    recs = ds.split(args.split)
    classes = list(clf.meta["classes"])
    if sorted(ds.classes) != sorted(classes):
        raise SystemExit(f"{args.run} was trained on {classes}, {args.data} has {ds.classes}")
    y = np.array([classes.index(r.label) for r in recs])
    drops = []
    for seed in range(args.seeds):
        res = robustness(clf, [r.path for r in recs], y, [args.corruption], seed=seed, show_progress=False)
        row = res["corruptions"][args.corruption]
        drops.append(100 * row["accuracy_drop"])
        print(f"seed {seed}: clean {res['clean']['accuracy']:.4f} -> {row['accuracy']:.4f} "
              f"({drops[-1]:.2f} points)", flush=True)
    d = np.array(drops)
    print(f"{args.corruption} on {len(recs)} photos: {d.mean():.2f} points lost on average over {len(d)} seeds "
          f"(sd {d.std(ddof=1) if len(d) > 1 else 0:.2f}, min {d.min():.2f}, max {d.max():.2f})")


if __name__ == "__main__":
    main()
