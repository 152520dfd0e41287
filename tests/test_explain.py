"""Grad-CAM explanations: where the heat lands, the explain command, report.html's gallery and the
review page's overlay."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

import wardrobe
from wardrobe.cli import app
from wardrobe.errors import WardrobeError
from wardrobe.inference.explain import Explainer, explain_photos
from conftest import shape_image


def _corner_photo(path, corner: str):
    """A white photo with the class's shape in one quadrant only."""
    canvas = Image.new("RGB", (256, 256), (245, 245, 245))
    shape = shape_image("circle", 7, size=128)
    canvas.paste(shape, (0, 0) if corner == "top-left" else (128, 128))
    canvas.save(path, quality=92)
    return path


def test_heat_lands_on_the_object(trained_run, tmp_path):
    ex = Explainer.load(trained_run)
    for corner in ("top-left", "bottom-right"):
        r = ex.explain(_corner_photo(tmp_path / f"{corner}.jpg", corner))
        heat = r["heatmap"]
        h = heat.shape[0] // 2
        quads = {"top-left": heat[:h, :h].mean(), "bottom-right": heat[h:, h:].mean()}
        assert heat.shape == r["view"].shape[:2] and 0 <= heat.min() and heat.max() <= 1
        assert quads[corner] == max(quads.values()), (corner, quads)


def test_explain_command_writes_overlays_and_refuses_what_it_should(trained_run, shapes_dir, tmp_path):
    photos = sorted(shapes_dir.rglob("*.jpg"))[:3]
    out = tmp_path / "cams"
    res = CliRunner().invoke(app, ["explain", str(trained_run), *map(str, photos), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = sorted(out.glob("*.gradcam.png"))
    assert len(written) == 3 and Image.open(written[0]).size == (240, 240)
    again = CliRunner().invoke(app, ["explain", str(trained_run), str(photos[0]), "--out", str(out)])
    assert isinstance(again.exception, WardrobeError) and "--overwrite" in str(again.exception)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(WardrobeError, match="not an ONNX export"):
        explain_photos(onnx, [photos[0]], tmp_path / "o")


def test_report_gallery_and_review_page_show_overlays(trained_run, shapes_dir, tmp_path):
    from wardrobe.inference.review import create_review_app
    from test_review import make_queue

    # a wrong label on purpose, so the gallery of confident mistakes has a card
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    (data / "circle" / "circle_000.jpg").rename(data / "square" / "circle_000.jpg")
    wardrobe.evaluate(trained_run, data, tmp_path / "eval", show_progress=False, workers=0, split="all")
    html = (tmp_path / "eval" / "report.html").read_text()
    assert 'class="thumb gradcam"' in html
    q = make_queue(tmp_path / "q", n=2)
    with TestClient(create_review_app(q, Explainer.load(trained_run).overlay_png)) as c:
        assert c.get("/api/queue").json()["explain"] is True
        png = c.get("/api/explain/0")
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
