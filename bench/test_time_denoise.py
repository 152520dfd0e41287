"""Would denoising noisy photos before the model win back what noise costs? A run's validation
photos clean and under Gaussian noise sigma 0.1 (the robustness corruption, one draw), each also
through OpenCV's non-local means (strength h), a bilateral filter or a 3x3 median; and the
noise level Immerkaer's estimator reads on clean, noisy, blurred and recompressed photos (what a
gate that denoises only noisy photos would have to tell apart). No retraining.

Run: .venv/bin/python bench/test_time_denoise.py RUN DATA   (e.g. runs/best clothing-top10)
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from wardrobe.data import load_dataset
from wardrobe.data.loader import iter_pixel_batches
from wardrobe.evaluation.evaluate import _own_split
from wardrobe.evaluation.robustness import CORRUPTIONS
from wardrobe.inference import Classifier

LAPLACE = torch.tensor([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=torch.float32)[None, None]


def noise_level(x: torch.Tensor) -> np.ndarray:
    """Immerkaer (1996): the noise sigma of each photo (N3HW in [0, 1]) from its grey image."""
    g = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    h, w = x.shape[-2:]
    r = torch.nn.functional.conv2d(g, LAPLACE).abs().sum((1, 2, 3))
    return (r * np.sqrt(np.pi / 2) / (6 * (h - 2) * (w - 2))).numpy()


def per_photo(x: torch.Tensor, fn) -> torch.Tensor:
    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.stack([fn(np.ascontiguousarray(a)) for a in u8])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255


FILTERS = {
    **{f"nlm h={h}": (lambda a, h=h: cv2.fastNlMeansDenoisingColored(a, None, h, h, 7, 21)) for h in (10, 15, 20, 25)},
    "bilateral 9": lambda a: cv2.bilateralFilter(a, 9, 50, 5),
    "median 3": lambda a: cv2.medianBlur(a, 3),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    clf = Classifier.load(args.run)
    recs = _own_split(load_dataset(args.data), clf, "validation", args.data).split("validation")
    classes = list(clf.meta["classes"])
    y = np.array([classes.index(r.label) for r in recs])
    preds: dict[str, np.ndarray] = {}
    levels: dict[str, list] = {"clean": [], "noise 0.1": [], "blur": [], "jpeg q20": []}
    seconds: dict[str, float] = {}
    for b, (idx, pixels, _) in enumerate(iter_pixel_batches([r.path for r in recs], clf.preprocess, 32, None)):
        ids, x = idx.numpy(), pixels.float() / 255
        g = torch.Generator().manual_seed(b * 101 + 1)
        noisy = CORRUPTIONS["gaussian_noise_0.1"][0](x, g)
        for name, v in (("clean", x), ("noise 0.1", noisy), ("blur", CORRUPTIONS["gaussian_blur"][0](x, g)),
                        ("jpeg q20", CORRUPTIONS["jpeg_q20"][0](x, g))):
            levels[name] += list(noise_level(v))
        views = {"clean": x, "noisy": noisy}
        for name, fn in FILTERS.items():
            t = time.perf_counter()
            views[f"noisy, {name}"] = per_photo(noisy, fn)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
        for h in (10, 20):
            views[f"clean, nlm h={h}"] = per_photo(x, FILTERS[f"nlm h={h}"])
        for name, v in views.items():
            preds.setdefault(name, np.zeros(len(recs), int))[ids] = clf.probs_from_pixels(v * 255.0).argmax(1)
    print(f"{args.run} on {len(recs)} {args.data} validation photos")
    for name, p in preds.items():
        print(f"  {name:<22} accuracy {(p == y).mean():.4f}")
    for name, v in levels.items():
        print(f"  noise level read on {name:<10}: percentiles 0/5/50/95/100 "
              + " / ".join(f"{q:.4f}" for q in np.percentile(v, [0, 5, 50, 95, 100])))
    print("  ms per photo: " + ", ".join(f"{k} {1000 * s / len(recs):.0f}" for k, s in seconds.items()))


if __name__ == "__main__":
    main()
