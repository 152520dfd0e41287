"""Every kind of bad or unusual photo file is decoded correctly or refused with a clear reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import shape_image
from PIL import Image

from wardrobe.data.images import ImageError, ImageLimits, load_image


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
    with pytest.raises(ImageError, match="300x300 is more than 10,000 pixels"):
        load_image(p, limits=ImageLimits(max_pixels=10_000))


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "I;16"])
def test_large_photos_shrink_early_like_a_full_decode(tmp_path, mode):
    """A large photo is shrunk by a whole factor in its own mode before the RGB conversion; what the
    model sees after preprocessing matches decoding it at full size."""

    from wardrobe.transforms import Preprocess

    big = shape_image("circle", 5, size=96).resize((1600, 1200), Image.Resampling.NEAREST)
    img = big.convert("L").point(lambda v: 65535 if v > 128 else 0, "I").convert("I;16") if mode == "I;16" \
        else big.convert(mode)
    p = tmp_path / f"big-{mode.replace(';', '')}.png"
    img.save(p)
    pre = Preprocess(input_size=64)
    small = load_image(p, min_side=pre.resize_to)
    assert min(small.size) < 1200 // 4 and small.mode == "RGB"  # shrunk before conversion
    full = load_image(p)  # no min_side: decoded at full size
    assert full.size == (1600, 1200)
    diff = (pre.pixels(small).float() - pre.pixels(full).float()).abs().mean()
    assert diff < 6, diff  # of 255


def test_one_set_of_limits_from_the_environment(tmp_path, monkeypatch):
    strip = tmp_path / "strip.png"
    Image.new("L", (2000, 20)).save(strip)
    with pytest.raises(ImageError, match=r"2000x20: aspect ratio above 25:1"):
        load_image(strip)
    monkeypatch.setenv("WARDROBE_MAX_ASPECT", "200")
    assert load_image(strip).size == (2000, 20)
    monkeypatch.setenv("WARDROBE_MAX_SIDE", "1000")
    with pytest.raises(ImageError, match="a side is longer than 1000 px"):
        load_image(strip)
