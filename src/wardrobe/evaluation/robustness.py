"""Robustness: accuracy and macro-F1 under corrupted photos, and the drop from clean.

Every corruption works on pixels scaled to [0, 1] (NCHW float), before the model's normalisation,
and returns pixels in [0, 1]. Randomness is seeded, so two runs give the same figures.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import f1_score

from wardrobe.data.loader import iter_pixel_batches
from wardrobe.ui import progress

BLUR_SIGMA = 1.5  # pixels at the model's input size
JPEG_QUALITY = 20


def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=generator)).clamp(0.0, 1.0)


def gaussian_blur(x: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F  # heavy: torchvision, only for the corruption transforms

    k = 2 * int(round(3 * sigma)) + 1  # the kernel covers +/- 3 sigma
    return F.gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma]).clamp(0.0, 1.0)


def jpeg(x: torch.Tensor, quality: int = JPEG_QUALITY) -> torch.Tensor:
    out = torch.empty_like(x)
    u8 = (x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, arr in enumerate(u8):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out[i] = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    return out


def brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply every pixel by ``factor`` (0.6 = 40% darker, 1.4 = 40% brighter), clipped to [0, 1]."""
    return (x * factor).clamp(0.0, 1.0)


# name -> (function of (pixels, generator), parameters recorded in metrics.json)
CORRUPTIONS: dict[str, tuple[Callable[[torch.Tensor, torch.Generator], torch.Tensor], dict]] = {
    "gaussian_noise_0.05": (lambda x, g: gaussian_noise(x, 0.05, g), {"sigma": 0.05}),
    "gaussian_noise_0.1": (lambda x, g: gaussian_noise(x, 0.1, g), {"sigma": 0.1}),
    "gaussian_noise_0.2": (lambda x, g: gaussian_noise(x, 0.2, g), {"sigma": 0.2}),
    "gaussian_blur": (lambda x, g: gaussian_blur(x), {"sigma_px": BLUR_SIGMA}),
    "jpeg_q20": (lambda x, g: jpeg(x), {"quality": JPEG_QUALITY}),
    "brightness_-40%": (lambda x, g: brightness(x, 0.6), {"factor": 0.6}),
    "brightness_+40%": (lambda x, g: brightness(x, 1.4), {"factor": 1.4}),
}


def corrupt(name: str, pixels_01: torch.Tensor, seed: int = 0) -> torch.Tensor:
    fn, _ = CORRUPTIONS[name]
    return fn(pixels_01, torch.Generator().manual_seed(seed))


def robustness(clf, paths: Sequence[str | Path], y_true: np.ndarray, corruptions: Sequence[str] | None = None,
               batch_size: int = 32, workers: int | None = None, seed: int = 0,
               show_progress: bool = True) -> dict:
    """Run ``clf`` (a Classifier) on each photo clean and under each corruption; photos that fail
    to decode are left out of every row alike. ``y_true``: class indices, one per path."""

    names = list(corruptions or CORRUPTIONS)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; known: {list(CORRUPTIONS)}")
    y_true = np.asarray(y_true, dtype=int)
    preds = {n: np.full(len(paths), -1) for n in ["clean", *names]}
    ok = np.zeros(len(paths), dtype=bool)
    with progress(show_progress) as bar:
        task = bar.add_task("robustness", total=len(paths), rate="")
        for b, (idx, pixels, bad) in enumerate(iter_pixel_batches(paths, clf.preprocess, batch_size, workers)):
            if len(idx):
                ids = idx.numpy()
                ok[ids] = True
                x = pixels.to(torch.float32) / 255.0
                preds["clean"][ids] = clf.probs_from_pixels(x * 255.0).argmax(1)
                for k, name in enumerate(names):
                    # One generator per (batch, corruption): the same photos get the same noise every run.
                    g = torch.Generator().manual_seed(seed * 1_000_003 + b * 101 + k)
                    xc = CORRUPTIONS[name][0](x, g)
                    preds[name][ids] = clf.probs_from_pixels(xc * 255.0).argmax(1)
            bar.update(task, advance=len(idx) + len(bad))
    if not ok.any():
        raise ValueError("no photo could be decoded")
    y = y_true[ok]
    labels = sorted(set(y.tolist()))

    def score(p):
        p = p[ok]
        return {"accuracy": float((p == y).mean()),
                "f1_macro": float(f1_score(y, p, labels=sorted(set(labels) | set(p.tolist())), average="macro",
                                           zero_division=0))}

    clean = score(preds["clean"])
    rows = {}
    for name in names:
        s = score(preds[name])
        rows[name] = {**s, "accuracy_drop": clean["accuracy"] - s["accuracy"],
                      "f1_macro_drop": clean["f1_macro"] - s["f1_macro"], "params": CORRUPTIONS[name][1]}
    return {"n_images": int(ok.sum()), "seed": seed, "pixels": "scaled to [0, 1] before normalisation",
            "clean": clean, "corruptions": rows}
