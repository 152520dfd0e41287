"""Does denoising every photo at test time (no retraining) buy noise robustness? Clean accuracy and
accuracy under Gaussian noise sigma 0.1 (three draws), with a Gaussian blur of sigma 0.5-1.0 px or
a median filter (3x3, 5x5, 3x3 twice) applied after the noise, at the model's input size.

Run: .venv/bin/python bench/test_time_blur.py RUN DATA   (e.g. runs/best clothing-top10; validation split)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from wardrobe.data import load_dataset
from wardrobe.data.loader import iter_pixel_batches
from wardrobe.evaluation.robustness import gaussian_blur, gaussian_noise
from wardrobe.inference import Classifier

DRAWS = 3


def median(x: torch.Tensor, k: int) -> torch.Tensor:
    p = k // 2
    u = F.pad(x, (p, p, p, p), mode="reflect").unfold(2, k, 1).unfold(3, k, 1)
    return u.reshape(*u.shape[:4], -1).median(-1).values


VIEWS = {"none": lambda t: t, **{f"blur {s} px": (lambda t, s=s: gaussian_blur(t, s)) for s in (0.5, 0.7, 1.0)},
         "median 3x3": lambda t: median(t, 3), "median 5x5": lambda t: median(t, 5),
         "median 3x3 twice": lambda t: median(median(t, 3), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    args = ap.parse_args()
    clf = Classifier.load(args.run)
    recs = load_dataset(args.data).split("validation")
    y = np.array([clf.classes.index(r.label) for r in recs])
    right = {(v, kind): 0 for v in VIEWS for kind in ("clean", "noisy")}
    for b, (idx, pixels, _) in enumerate(iter_pixel_batches([r.path for r in recs], clf.preprocess, 32, None)):
        x, truth = pixels.float() / 255, y[idx.numpy()]
        for s, view in VIEWS.items():
            right[(s, "clean")] += int((clf.probs_from_pixels(view(x) * 255).argmax(1) == truth).sum())
            for draw in range(DRAWS):
                xn = gaussian_noise(x, 0.1, torch.Generator().manual_seed(draw * 7919 + b))
                right[(s, "noisy")] += int((clf.probs_from_pixels(view(xn) * 255).argmax(1) == truth).sum())
    for s in VIEWS:
        print(f"test-time {s}: clean {right[(s, 'clean')] / len(y):.4f}, "
              f"noise 0.1 {right[(s, 'noisy')] / len(y) / DRAWS:.4f}")


if __name__ == "__main__":
    main()
