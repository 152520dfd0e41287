"""Every kind of bad or unusual photo file is decoded correctly or refused with a clear reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from wardrobe.data.images import ImageError, load_image
from conftest import shape_image


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="missing file") as e:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(e.value)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty file \(0 bytes\)"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    data = _jpeg_bytes(shape_image("circle", 1, 128))
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(p)


def test_text_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a photo\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(p)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpg"
    shape_image("square", 2).convert("CMYK").save(p)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (96, 96)
    # the blue square stays blue after the round trip through CMYK
    r, g, b = np.asarray(img)[48, 48].astype(int)
    assert b > r + 60


def test_rgba_png_is_composited_on_white(tmp_path):
    p = tmp_path / "alpha.png"
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((0, 0, 255, 255), (10, 10, 30, 30))  # opaque blue square
    rgba.save(p)
    arr = np.asarray(load_image(p))
    assert tuple(arr[0, 0]) == (255, 255, 255)  # transparent -> white, not red or black
    assert tuple(arr[20, 20]) == (0, 0, 255)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "deep.png"
    arr16 = np.zeros((20, 20), dtype=np.uint16)
    arr16[:, 10:] = 65535
    arr16[:, :10] = 32768
    Image.fromarray(arr16).save(p)
    assert Image.open(p).mode.startswith("I")
    arr = np.asarray(load_image(p))
    assert arr.shape == (20, 20, 3)
    assert arr[0, 15, 0] == 255 and 125 <= arr[0, 5, 0] <= 130  # half range -> mid grey, not white


def test_exif_rotation_is_applied(tmp_path):
    p = tmp_path / "rotated.jpg"
    img = Image.new("RGB", (60, 30), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 20, 30))  # red band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    img.save(p, exif=exif, quality=95)
    out = load_image(p)
    assert out.size == (30, 60)  # portrait once the orientation is applied
    arr = np.asarray(out).astype(int)
    assert arr[5, 15, 0] > 200 and arr[5, 15, 1] < 80  # red band now at the top


def test_grayscale_and_palette(tmp_path):
    g = tmp_path / "grey.png"
    Image.new("L", (8, 8), 100).save(g)
    assert np.asarray(load_image(g))[0, 0].tolist() == [100, 100, 100]
    p = tmp_path / "pal.gif"
    shape_image("circle", 3).convert("P").save(p)
    assert load_image(p).mode == "RGB"


def test_pixel_limit(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(p)
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(p, max_pixels=10_000)
