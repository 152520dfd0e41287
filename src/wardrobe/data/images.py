"""Decoding photos safely: every way a file can be bad becomes an ImageError naming the problem."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from wardrobe.errors import WardrobeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# A truncated JPEG must fail, not decode into a half-grey photo that silently poisons metrics.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(WardrobeError):
    """A photo that cannot be used; ``reason`` is short enough for a table."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit and 32-bit integer greyscale: scale the real range into 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Product photos with transparency are cut-outs meant for a white page.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_failure_reason(exc: OSError, max_chars: int | None = None) -> str:
    """PIL's OSError on a damaged file, as a short reason (also used by the HTTP service)."""
    msg = str(exc)
    if "truncated" in msg or "broken data stream" in msg or "premature end" in msg.lower():
        return "truncated or corrupt image"
    return f"cannot decode image ({msg[:max_chars]})"


def decode_opened(img: Image.Image, min_side: int | None = None) -> Image.Image:
    """The decode that follows a header's checks, for files and uploads alike: JPEG draft mode
    (``min_side``: detail a later resize would throw away is never decoded), full load, EXIF
    orientation, 8-bit RGB."""
    if min_side and img.format in ("JPEG", "MPO"):  # MPO: a phone's multi-picture JPEG
        img.draft("RGB", (min_side, min_side))
    img.load()
    return _to_rgb(ImageOps.exif_transpose(img))


def load_image(path: str | Path, min_side: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Open, fully decode, apply the EXIF orientation and convert to 8-bit RGB.

    ``min_side`` lets JPEG decoding skip detail that a later resize would throw away (PIL's draft
    mode), keeping the shorter side at least that long.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(path, "missing file") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror})") from None
    if size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if max_pixels is not None and img.size[0] * img.size[1] > max_pixels:
                raise ImageError(path, f"too many pixels ({img.size[0]}x{img.size[1]})")
            return decode_opened(img, min_side)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(path, "too many pixels (decompression bomb guard)") from None
    except OSError as exc:
        raise ImageError(path, decode_failure_reason(exc)) from None
    except (ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(path, f"cannot decode image ({exc})") from None
