"""Does blurring every photo at test time (no retraining) buy noise robustness? Clean accuracy and
accuracy under Gaussian noise sigma 0.1 (three draws), with a Gaussian blur of sigma 0.5-1.0 px
applied after the noise, at the model's input size.

Run: .venv/bin/python bench/test_time_blur.py RUN DATA   (e.g. runs/best clothing-top10; validation split)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from wardrobe.data import load_dataset
from wardrobe.data.loader import iter_pixel_batches
from wardrobe.evaluation.robustness import gaussian_blur, gaussian_noise
from wardrobe.inference import Classifier

SIGMAS = (0.0, 0.5, 0.7, 1.0)
DRAWS = 3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    args = ap.parse_args()
    clf = Classifier.load(args.run)
    recs = load_dataset(args.data).split("validation")
    y = np.array([clf.classes.index(r.label) for r in recs])
    right = {(s, kind): 0 for s in SIGMAS for kind in ("clean", "noisy")}
    for b, (idx, pixels, _) in enumerate(iter_pixel_batches([r.path for r in recs], clf.preprocess, 32, None)):
        x, truth = pixels.float() / 255, y[idx.numpy()]
        for s in SIGMAS:
            def view(t, s=s):
                return gaussian_blur(t, s) if s else t
            right[(s, "clean")] += int((clf.probs_from_pixels(view(x) * 255).argmax(1) == truth).sum())
            for draw in range(DRAWS):
                xn = gaussian_noise(x, 0.1, torch.Generator().manual_seed(draw * 7919 + b))
                right[(s, "noisy")] += int((clf.probs_from_pixels(view(xn) * 255).argmax(1) == truth).sum())
    for s in SIGMAS:
        print(f"test-time blur {s} px: clean {right[(s, 'clean')] / len(y):.4f}, "
              f"noise 0.1 {right[(s, 'noisy')] / len(y) / DRAWS:.4f}")


if __name__ == "__main__":
    main()
