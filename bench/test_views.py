"""How a trained model's validation accuracy depends on the view it is shown at test time: input
size, centre-crop share, crop vs squash, and the mirror-image average (TTA). Every view is scored on
the same validation photos in one run; the model's own view is marked. A view other than the one
the model trained with is a change of input distribution, so only a gain here would justify one.

Run: .venv/bin/python bench/test_views.py RUN [--data clothing-top10]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.evaluation.speed import cpu_model
from wardrobe.inference.classifier import Classifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--data", default="clothing-top10")
    args = ap.parse_args()
    ds = load_dataset(args.data)
    val = ds.split("validation")
    y = np.array([ds.classes.index(r.label) for r in val])
    own = Classifier.load(args.run, runtime="torch").preprocess
    mine = (own.resize_mode, own.input_size, own.crop_pct)
    views = [(*mine, False), (*mine, True)]
    for size in (own.input_size - 16, own.input_size + 16, own.input_size + 32):
        views.append((own.resize_mode, size, own.crop_pct, False))
    views += [("crop", own.input_size, 0.875, False), ("crop", own.input_size, 1.0, False),
              ("squash", own.input_size, 1.0, False)]
    print(f"{args.run} on {ds.name} validation ({len(val)} photos), {cpu_model()}")
    seen = set()
    for mode, size, crop, tta in views:
        key = (mode, size, crop if mode == "crop" else 1.0, tta)
        if key in seen:
            continue
        seen.add(key)
        clf = Classifier.load(args.run, runtime="torch", tta=tta)
        clf.preprocess = dataclasses.replace(own, resize_mode=mode, input_size=size, crop_pct=crop)
        probs = clf.predict_proba([r.path for r in val], show_progress=False)[0]
        right = int((probs.argmax(1) == y).sum())
        mark = " (the model's own view)" if (mode, size, crop, tta) == views[0] else ""
        print(f"{mode:6s} {size} px crop {crop:.3f} tta {tta!s:5s}: {right}/{len(y)} = {right / len(y):.4f}{mark}")


if __name__ == "__main__":
    main()
