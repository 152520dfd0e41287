"""The HTTP service: API with TestClient, a fuzz corpus of bad uploads (never a 500, each refused with
its own status and a JSON body), the web page in a real headless Chromium, and a loopback load test."""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import shape_image
from fastapi.testclient import TestClient
from loadtest import run_load, server_in_thread
from PIL import Image, ImageDraw

import wardrobe
from wardrobe.inference.serve import Limits, create_app

CLASSES = ["circle", "square", "triangle"]


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_of_zeros(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale PNG of zeros built row by row with zlib, so huge images cost kilobytes to make;
    ``rows`` < height leaves the pixel data short (only the header matters to a guard)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    parts = [comp.compress(row) for _ in range(height if rows is None else rows)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _exif_rotated() -> bytes:
    """A 120x80 photo whose EXIF says 'rotate 90 degrees': decoded upright it is 80x120."""
    img = shape_image("square", 31, size=120).crop((0, 20, 120, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _jpeg(img, exif=exif.tobytes())


def fuzz_corpus() -> dict[str, tuple[bytes, set[int], str | None]]:
    """name -> (bytes, the photo's own status (200: labelled, else the error's kind), expected label
    or error code). Every request answers 200: a bad photo's error stands in its place among the results."""
    good = _jpeg(shape_image("triangle", 11))
    alpha = Image.new("RGBA", (96, 96), (0, 0, 0, 0))  # a cut-out: transparent around a red disc
    ImageDraw.Draw(alpha).ellipse([16, 16, 80, 80], fill=(220, 40, 40, 255))
    sixteen = Image.fromarray(np.asarray(shape_image("square", 13).convert("L"), dtype=np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    return {
        "empty.jpg": (b"", {415}, "empty_file"),
        "truncated.jpg": (good[: len(good) // 2], {422}, "corrupt_image"),
        "header-only.jpg": (good[:200], {422}, "corrupt_image"),
        "text.jpg": (b"this is not a photo, it is a text file\n" * 20, {415}, "unsupported_media_type"),
        "random.bin": (os.urandom(4096), {415}, "unsupported_media_type"),
        "svg.png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', {415},
                    "unsupported_media_type"),
        # 8000 x 8000: 64 MB of pixels in ~70 kB, under PIL's own bomb limit, refused from the header
        "bomb-8000.png": (png_of_zeros(8000, 8000), {422}, "too_many_pixels"),
        # 60000 x 60000 header: past PIL's own decompression-bomb limit too
        "bomb-60000.png": (png_of_zeros(60000, 60000, rows=64), {422}, "too_many_pixels"),
        "side-20000.png": (png_of_zeros(20000, 1500), {422}, "too_many_pixels"),
        "strip-5000x40.png": (png_of_zeros(5000, 40), {422}, "bad_aspect_ratio"),
        "cmyk.jpg": (_jpeg(shape_image("square", 14).convert("CMYK")), {200}, "square"),
        "sixteen-bit.png": (_png(sixteen), {200}, None),
        "alpha.png": (_png(alpha), {200}, "circle"),
        "exif-rotated.jpg": (_exif_rotated(), {200}, "square"),
        "good.jpg": (good, {200}, "triangle"),
    }


@pytest.fixture(scope="module")
def client(trained_run):
    app = create_app(trained_run, limits=Limits(max_upload_bytes=3_000_000, max_files=4))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_model_health_docs_and_openapi(client, trained_run):
    m = client.get("/v1/model").json()
    assert m["classes"] == CLASSES and m["backbone"].endswith("efficientnet_lite1")
    assert m["version"]["wardrobe"] == wardrobe.__version__ and m["runtime"] in ("onnx", "torch")
    assert m["metrics"]["validation"]["accuracy"] == 1.0
    assert client.get("/healthz").json()["status"] == "ok"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_predict_one_and_several_files_with_top_k(client):
    files = [("files", (f"{k}.jpg", _jpeg(shape_image(k, 900 + i)), "image/jpeg")) for i, k in enumerate(CLASSES)]
    r = client.post("/v1/predict", files=files, params={"top_k": 2})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["filename"] for x in res] == ["circle.jpg", "square.jpg", "triangle.jpg"]
    assert [x["label"] for x in res] == CLASSES
    assert all(len(x["top_k"]) == 2 and x["top_k"][0]["prob"] >= x["top_k"][1]["prob"] for x in res)
    one = client.post("/v1/predict", files={"files": ("a.jpg", _jpeg(shape_image("square", 5)), "image/jpeg")},
                      data={"top_k": "3"}).json()["results"]
    assert len(one) == 1 and len(one[0]["top_k"]) == 3 and one[0]["label"] == "square"
    assert abs(sum(t["prob"] for t in one[0]["top_k"]) - 1.0) < 1e-4


@pytest.mark.parametrize("name", list(fuzz_corpus()))
def test_fuzz_corpus_never_500_and_json_errors(client, name):
    data, statuses, expect = fuzz_corpus()[name]
    r = client.post("/v1/predict", files={"files": (name, data, "application/octet-stream")})
    assert r.status_code == 200, (r.status_code, r.text[:300])
    res = r.json()["results"][0]
    assert res["filename"] == name
    if statuses == {200}:
        assert res["status"] == "ok" and res["label"] in CLASSES
        if expect:
            assert res["label"] == expect
        if name == "exif-rotated.jpg":
            assert (res["width"], res["height"]) == (80, 120)  # orientation applied before labelling
    else:
        assert res["status"] == "error" and res["error"]["code"] == expect and res["error"]["message"]
        assert "label" not in res
    # the server is still up and labelling
    ok = client.post("/v1/predict", files={"files": ("ok.jpg", _jpeg(shape_image("circle", 3)), "image/jpeg")})
    assert ok.status_code == 200 and ok.json()["results"][0]["label"] == "circle"


def test_request_limits_and_errors_are_json(client, trained_run):
    big = os.urandom(3_100_000)
    r = client.post("/v1/predict", files={"files": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    five = [("files", (f"{i}.jpg", _jpeg(shape_image("circle", i)), "image/jpeg")) for i in range(5)]
    r = client.post("/v1/predict", files=five)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_files"
    r = client.post("/v1/predict", data={"x": "1"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.post("/v1/predict", files={"files": ("a.jpg", b"xx", "image/jpeg")}, params={"top_k": "zero"})
    assert r.status_code == 422 and "top_k" in r.json()["detail"]
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "http_404"
    r = client.get("/v1/predict")
    assert r.status_code == 405 and "error" in r.json()



def test_one_bad_photo_does_not_lose_the_others(client):
    mixed = [("files", ("good.jpg", _jpeg(shape_image("circle", 1)), "image/jpeg")),
             ("files", ("bad.jpg", b"nope", "image/jpeg")),
             ("files", ("empty.jpg", b"", "image/jpeg")),
             ("files", ("good2.jpg", _jpeg(shape_image("triangle", 2)), "image/jpeg"))]
    r = client.post("/v1/predict", files=mixed)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["filename"] for x in res] == ["good.jpg", "bad.jpg", "empty.jpg", "good2.jpg"]
    assert [x["status"] for x in res] == ["ok", "error", "error", "ok"]
    assert [res[0]["label"], res[3]["label"]] == ["circle", "triangle"]
    assert res[1]["error"]["code"] == "unsupported_media_type" and res[2]["error"]["code"] == "empty_file"
    # the schema declares both kinds of entry
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"Prediction", "FileError", "PredictResponse"} <= set(schema)
    assert schema["FileError"]["properties"]["error"]


def test_busy_service_answers_503_not_a_queue_without_end(trained_run):
    app = create_app(trained_run, limits=Limits(max_active_requests=0), workers=1)
    assert app.state.service.limiter.total_tokens == 1
    with TestClient(app) as c:
        r = c.post("/v1/predict", files={"files": ("a.jpg", _jpeg(shape_image("circle", 1)), "image/jpeg")})
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "busy"


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'type="file"' in html and "/v1/predict" in html and "drop" in html.lower()
    # no CDN: nothing fetched from another origin
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html


def test_serve_binds_loopback_by_default(trained_run, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from wardrobe.cli import app

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    res = CliRunner().invoke(app, ["serve", str(trained_run), "--port", "8123"])
    assert res.exit_code == 0, res.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123


@pytest.fixture(scope="module")
def live_server(trained_run):
    with server_in_thread(create_app(trained_run, workers=2)) as url:
        yield url


def test_loopback_load_8_clients_x_200_requests(live_server):
    payload = _jpeg(shape_image("square", 4242, size=160))
    res = run_load(live_server, payload, clients=8, requests=200, expect_label="square", deadline_s=420)
    print(f"\nload test (8 clients x 200 requests, 127.0.0.1): {res.summary()}")
    assert not res.stopped_by_deadline, res.summary()
    assert res.errors == [] and res.wrong == 0
    assert res.statuses[200] == 1600 and len(res.latencies_ms) == 1600
    assert res.pct(95) < 10_000


CHROMIUM = "/usr/bin/chromium"


def _browser_skip_reason() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not installed (.ci/run installs Debian's chromium with apt when it can)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.mark.skipif(_browser_skip_reason() is not None, reason=str(_browser_skip_reason()))
def test_page_in_headless_chromium_labels_an_uploaded_photo(live_server, tmp_path):
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "shirt.jpg"
    shape_image("square", 777, size=140).save(photo, quality=92)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(live_server + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('3 classes')")
            page.set_input_files("#picker", str(photo))
            page.wait_for_selector('.card[data-state="done"]', timeout=60_000)
            labels = page.locator('.card[data-state="done"] .label').all_inner_texts()
            probs = page.locator('.card[data-state="done"] .prob').all_inner_texts()
            widths = page.eval_on_selector_all('.card[data-state="done"] .bar span', "els => els.map(e => e.style.width)")
            thumb = page.eval_on_selector('.card[data-state="done"] img', "e => e.naturalWidth")
            page.set_input_files("#picker", str(bad))
            page.wait_for_selector('.card[data-state="error"]', timeout=60_000)
            error = page.locator('.card[data-state="error"] .status').inner_text()
        finally:
            browser.close()
    assert labels[0] == "square" and len(labels) == 3
    assert all(re.fullmatch(r"\d+\.\d%", p) for p in probs) and float(probs[0][:-1]) > 50
    assert len(widths) == 3 and int(widths[0][:-1]) > 50
    assert thumb == 140
    assert "not a supported image" in error
