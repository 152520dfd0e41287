"""Decoding photos safely: every way a file can be bad becomes an ImageError naming the problem."""

from __future__ import annotations

import io
import os
import threading
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from wardrobe.errors import WardrobeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# A truncated JPEG must fail, not decode into a half-grey photo that silently poisons metrics.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class ImageLimits:
    """The one set of size limits every entry point (train, evaluate, predict, audit, serve) checks
    from a photo's header, before decoding it. Set them with WARDROBE_MAX_PIXELS, WARDROBE_MAX_SIDE and
    WARDROBE_MAX_ASPECT, or ``wardrobe serve --max-pixels``."""

    max_pixels: int = 40_000_000  # width x height: a 40 MP RGBA photo decodes to 160 MB
    max_side: int = 12_000
    # Preprocessing scales the shorter side to ~256 px: a 20000 x 20 strip would become a
    # 256,000 x 256 intermediate image, so extreme aspect ratios are refused too.
    max_aspect: float = 25.0

    @classmethod
    def from_env(cls) -> "ImageLimits":
        d = cls()
        try:
            return cls(int(os.environ.get("WARDROBE_MAX_PIXELS", d.max_pixels)),
                       int(os.environ.get("WARDROBE_MAX_SIDE", d.max_side)),
                       float(os.environ.get("WARDROBE_MAX_ASPECT", d.max_aspect)))
        except ValueError as exc:
            raise WardrobeError(f"WARDROBE_MAX_PIXELS / _SIDE / _ASPECT: not a number ({exc})") from None

    def check(self, width: int, height: int) -> tuple[str, str] | None:
        """None when a width x height photo is within the limits, else (code, message)."""
        if width <= 0 or height <= 0:
            return "corrupt_image", "image has no pixels"
        if width * height > self.max_pixels:
            return "too_many_pixels", f"{width}x{height} is more than {self.max_pixels:,} pixels"
        if max(width, height) > self.max_side:
            return "too_many_pixels", f"{width}x{height}: a side is longer than {self.max_side} px"
        if max(width, height) / min(width, height) > self.max_aspect:
            return "bad_aspect_ratio", f"{width}x{height}: aspect ratio above {self.max_aspect:g}:1"
        return None


class DecodeBudget:
    """Bounds the memory of photos being decoded at once, across threads: a decode holds its
    estimated bytes until it is done (one photo over the whole budget runs alone)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0
        self.total = 0  # bytes ever held: lets a caller tell whether large photos went through
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int):
        nbytes = min(nbytes, self.max_bytes)
        with self._cond:
            while self.used and self.used + nbytes > self.max_bytes:
                self._cond.wait()
            self.used += nbytes
            self.total += nbytes
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._cond.notify_all()


def decode_bytes(img: Image.Image) -> int:
    """Upper bound of the memory decoding ``img`` takes at its current (draft) size: PIL keeps 1 to
    4 bytes a pixel, and a conversion before the early downscale (1-bit, palette, 16-bit) up to 4 more."""
    w, h = img.size
    native = 1 if img.mode in ("1", "L", "P") else 4
    convert = 4 if img.mode in ("1", "P", "PA") or img.mode.startswith("I;16") else 0
    return w * h * (native + convert)


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


# EXIF orientation -> the transposition that shows the photo upright (as ImageOps.exif_transpose).
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def _shrink_early(img: Image.Image, min_side: int | None) -> Image.Image:
    """Shrink a large decoded photo by a whole factor in its own mode, before anything copies it at
    full size, keeping the shorter side at least twice ``min_side`` (as PIL's reducing_gap=2)."""
    factor = min(img.size) // (2 * min_side) if min_side else 0
    if factor < 2:
        return img
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "PA"):  # palette indices cannot be averaged
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode.startswith("I;16"):
        img = img.convert("I")
    return img.reduce(factor)


def decode_opened(img: Image.Image, min_side: int | None = None, budget: DecodeBudget | None = None) -> Image.Image:
    """The decode that follows a header's checks, for files and uploads alike: JPEG draft mode
    (``min_side``: detail a later resize would throw away is never decoded), full load, an early
    whole-factor shrink of large photos, EXIF orientation, 8-bit RGB. ``budget`` bounds the memory
    of concurrent decodes."""
    if min_side and img.format in ("JPEG", "MPO"):  # MPO: a phone's multi-picture JPEG
        img.draft("RGB", (min_side, min_side))
    orientation = img.getexif().get(0x0112, 1)
    with budget.hold(decode_bytes(img)) if budget is not None else nullcontext():
        img.load()
        img = _shrink_early(img, min_side)
        if orientation in _ORIENT:
            img = img.transpose(_ORIENT[orientation])
        return _to_rgb(img)



def load_image(path: str | Path, min_side: int | None = None, limits: ImageLimits | None = None) -> Image.Image:
    """Open, check the size limits (default ``ImageLimits.from_env()``), fully decode, apply the
    EXIF orientation and convert to 8-bit RGB.

    ``min_side`` lets decoding skip detail that a later resize would throw away (JPEG draft mode,
    then a whole-factor shrink), keeping the shorter side at least that long.
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
            if (bad := (limits or ImageLimits.from_env()).check(*img.size)) is not None:
                raise ImageError(path, bad[1])
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


def thumbnail_jpeg(path: str | Path, side: int, quality: int = 80) -> bytes:
    """A JPEG of the photo shrunk to fit ``side`` x ``side`` (decoded at about that size, not in
    full); raises ImageError for a photo that cannot be read."""
    img = load_image(path, min_side=side)
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
