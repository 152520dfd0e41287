"""The shape of a dataset's photos: the input shape `--aspect auto` trains at."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

# The shapes photos come in, as width / height: 1:2, 9:16, 2:3, 3:4, 4:5, square, and the same turned.
COMMON_ASPECTS = (1 / 2, 9 / 16, 2 / 3, 3 / 4, 4 / 5, 1.0, 5 / 4, 4 / 3, 3 / 2, 16 / 9, 2.0)
_SWAPPED = {5, 6, 7, 8}  # EXIF orientations shown turned by 90 degrees


def photo_aspect(path: str | Path) -> float | None:
    """Width over height of the photo as shown (EXIF orientation applied), from its header; None
    when it cannot be read (the decode reports the file later)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            if img.getexif().get(0x0112, 1) in _SWAPPED:
                w, h = h, w
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return w / h if w > 0 and h > 0 else None


def typical_aspect(paths: Sequence[str | Path], sample: int = 500) -> float:
    """The common shape nearest (in log ratio) to the median width / height of up to ``sample`` photos
    spread evenly over ``paths``; 1 (square) when none can be read."""
    step = max(1, math.ceil(len(paths) / sample))
    ratios = [r for r in (photo_aspect(p) for p in list(paths)[::step]) if r is not None]
    if not ratios:
        return 1.0
    median = float(np.exp(np.median(np.log(ratios))))
    return min(COMMON_ASPECTS, key=lambda a: abs(math.log(a / median)))


def aspect_name(aspect: float) -> str:
    """0.75 -> "3:4 (width:height)"."""
    f = Fraction(aspect).limit_denominator(20)
    return f"{f.numerator}:{f.denominator} (width:height)"


def parse_aspect(value: str | float | None) -> float | str | None:
    """``--aspect``: None (square), "auto", "W:H" (3:4) or a number (0.75) -> "auto" or width/height.
    Raises ValueError with the reason when it is none of these."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if ":" in text:
        w, _, h = text.partition(":")
        return float(w) / float(h)  # ValueError or ZeroDivisionError on a bad pair
    return float(text)
