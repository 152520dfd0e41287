"""Genuinely varied synthetic photos, and edited copies of them, for the duplicate-finding tests.

Each photo mixes a random gradient, random shapes of random colours and sizes, random lines and a
noise texture of random strength, so two different seeds share nothing but chance.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance


def varied_photo(seed: int, size: tuple[int, int] = (160, 128)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    arr = (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None])
    if rng.random() < 0.5:  # a blocky texture on some photos
        cells = rng.integers(2, 9)
        tex = rng.normal(0, rng.uniform(10, 50), (cells, cells, 3))
        arr = arr + np.kron(tex, np.ones((h // cells + 1, w // cells + 1, 1)))[:h, :w]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.integers(-w // 4, w), rng.integers(-h // 4, h)
        x1, y1 = x0 + rng.integers(w // 8, w // 1.5), y0 + rng.integers(h // 8, h // 1.5)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        if kind == 0:
            d.ellipse([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            d.rectangle([x0, y0, x1, y1], fill=colour)
        elif kind == 2:
            d.polygon([tuple(int(v) for v in rng.integers(0, (w, h))) for _ in range(3)], fill=colour)
        else:
            d.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(2, 10)))
    noise = rng.normal(0, rng.uniform(2, 12), (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def banded_portraits(root, n: int = 6, shape: tuple[int, int] = (128, 64)):
    """Grey-noise portraits (height, width ``shape``) whose class, red or blue, is a band over the
    top eighth only: a centre square never sees it."""
    rng = np.random.default_rng(0)
    for kind, colour in (("red", (230, 20, 20)), ("blue", (20, 20, 230))):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(90, 160, size=(*shape, 3), dtype=np.uint8)
            a[: shape[0] // 8] = colour
            Image.fromarray(a).save(root / kind / f"{kind}_{i}.png")
    return root


def reencode(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def edited_copy(img: Image.Image, kind: str, seed: int) -> Image.Image:
    """A near duplicate: re-encoded, resized, slightly cropped, colour-shifted, or all at once."""
    rng = np.random.default_rng(seed)
    w, h = img.size
    if kind == "reencode":
        return reencode(img, int(rng.integers(30, 70)))
    if kind == "resize":
        f = rng.uniform(0.5, 0.8) if rng.random() < 0.7 else rng.uniform(1.2, 1.6)
        return img.resize((int(w * f), int(h * f)), Image.Resampling.BILINEAR)
    if kind == "crop":
        m = rng.uniform(0.02, 0.06, 4)
        return img.crop((int(w * m[0]), int(h * m[1]), int(w * (1 - m[2])), int(h * (1 - m[3]))))
    if kind == "colour":
        arr = np.asarray(img, dtype=np.float64) + rng.uniform(-25, 25, 3)
        out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        return ImageEnhance.Color(out).enhance(rng.uniform(0.7, 1.3))
    if kind == "all":
        out = edited_copy(img, "crop", seed + 1)
        out = edited_copy(out, "colour", seed + 2)
        out = edited_copy(out, "resize", seed + 3)
        return reencode(out, 60)
    raise ValueError(kind)


EDITS = ("reencode", "resize", "crop", "colour", "all")
