"""From-scratch baselines on clothing-top10 at 128 px, each within a fixed budget (<= 15 minutes):
validation accuracy against the majority-class rate.
Run: WARDROBE_DATA_DIR=../shared/data .venv/bin/python bench/scratch.py [--models alexnet] [--minutes 14]"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time

import wardrobe
from wardrobe.data import load_dataset

# Epochs per network so that the one-cycle schedule anneals inside the budget: a run cut by the time
# guard halfway through its schedule never reaches a low learning rate. AlexNet (57M parameters, most
# in its fully connected layers) runs ~28 train images/s here, so 8 epochs fit; with that few epochs
# light augmentation lets it fit the data at all (standard: train accuracy 0.44 after 8 epochs).
RECIPES = {"mobilenet_v1": {"epochs": 15, "augment": "standard"},
           "alexnet": {"epochs": 8, "augment": "light"}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v1,alexnet")
    ap.add_argument("--epochs", type=int, default=None, help="override the per-network epochs")
    ap.add_argument("--minutes", type=float, default=14.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    val = load_dataset("clothing-top10").split("validation")
    majority = collections.Counter(r.label for r in val).most_common(1)[0][1] / len(val)
    print(f"machine: {os.cpu_count()} cores; majority-class rate on validation {majority:.4f}")
    out = args.out or tempfile.mkdtemp(prefix="wardrobe-scratch-")
    for name in args.models.split(","):
        recipe = RECIPES.get(name, {"epochs": 15, "augment": "standard"})
        t0 = time.perf_counter()
        res = wardrobe.train("clothing-top10", os.path.join(out, name), mode="scratch", model=name,
                             image_size=128, epochs=args.epochs or recipe["epochs"], max_minutes=args.minutes,
                             lr=2e-3, weight_decay=0.05, augment=recipe["augment"], label_smoothing=0.1,
                             show_progress=False)
        minutes = (time.perf_counter() - t0) / 60
        m = res.metrics
        print(f"{name}: validation accuracy {m['accuracy']:.4f} (+{(m['accuracy'] - majority) * 100:.1f} points over "
              f"majority), macro-F1 {m['f1_macro']:.4f}, {len(m['epochs'])} epochs, {minutes:.1f} min wall, "
              f"{sum(m['timings']['train_images_per_s']) / len(m['epochs']):.0f} train images/s")


if __name__ == "__main__":
    main()
