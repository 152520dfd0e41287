"""The service under hostile load: decoded pixels bounded per request and across requests, stalled
uploads dropped, docs that work offline, the run's name instead of server paths, and schema-driven
fuzzing with schemathesis."""

from __future__ import annotations

import io
import re
import socket
import struct
import threading
import time
import zlib

import httpx
import pytest
from conftest import shape_image
from fastapi.testclient import TestClient
from loadtest import server_in_subprocess, server_in_thread
from PIL import Image

from wardrobe.data.images import ImageLimits
from wardrobe.inference.serve import Limits, create_app

# The README's stated ceiling for the worst request at the concurrency limit (Serving).
MEMORY_CEILING_MB = 500


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_1bit(width: int, height: int) -> bytes:
    """A 1-bit PNG of stripes: 36 megapixels in about 11 kB."""
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x55" * ((width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, resident peak) of a process, in MB."""
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def _server_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for line in open("/proc/net/tcp").readlines()[1:]:
        local, state, inode = line.split()[1], line.split()[3], line.split()[9]
        if state == "0A" and int(local.split(":")[1], 16) == int(port):
            break
    else:
        raise RuntimeError("no listening socket")
    import os

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise RuntimeError("no process owns the socket")


def test_worst_requests_at_the_concurrency_limit_stay_under_the_memory_ceiling(trained_run):
    """Eight requests at once (the default limit), each of sixteen 6000x6000 1-bit PNGs: 4.6 gigapixels
    of photos in 1.4 MB of requests. Decoded one at a time under the decode budget and shrunk at once,
    they raise the server's peak memory by less than the ceiling, and repeated bursts do not grow it."""
    bomb = png_1bit(6000, 6000)
    files = [("files", (f"big{i}.png", bomb, "image/png")) for i in range(16)]
    small = _jpeg(shape_image("circle", 1))
    with server_in_subprocess(trained_run, ["--workers", "2"]) as url:
        pid = _server_pid(url)
        # warm-up at the batch size the burst uses, so inference buffers are counted in the baseline
        httpx.post(url + "/v1/predict", files=[("files", (f"s{i}.jpg", small, "image/jpeg")) for i in range(16)],
                   timeout=60).raise_for_status()
        _, base_peak = _memory_mb(pid)
        base_now, _ = _memory_mb(pid)
        after = []
        for _burst in range(2):
            answers = []

            def one():
                r = httpx.post(url + "/v1/predict", files=files, timeout=300)
                answers.append((r.status_code, [x["status"] for x in r.json()["results"]]))

            threads = [threading.Thread(target=one) for _ in range(Limits().max_active_requests)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert answers == [(200, ["ok"] * 16)] * 8
            after.append(_memory_mb(pid))
    peak_rise = after[-1][1] - base_peak
    print(f"\nserver memory: baseline {base_now:.0f} MB, peak +{peak_rise:.0f} MB, "
          f"after bursts {after[0][0]:.0f} / {after[1][0]:.0f} MB")
    assert peak_rise < MEMORY_CEILING_MB
    assert after[1][0] - after[0][0] < 50  # the second burst reuses what the first freed: no growth


def test_stalled_uploads_are_dropped_and_capped(trained_run):
    limits = Limits(max_active_requests=3, upload_timeout_s=1.5)
    with server_in_thread(create_app(trained_run, limits=limits, workers=1)) as url:
        host, port = url[len("http://"):].split(":")
        stalled = []
        for _ in range(5):  # announce 10 MB, send 100 bytes, stop
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 10000000\r\n\r\n" + b"--b\r\n" + b"x" * 95)
            stalled.append(s)
            time.sleep(0.1)
        answers = []
        t0 = time.monotonic()
        for s in stalled:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            answers.append((data.split(b" ", 2)[1], round(time.monotonic() - t0, 1)))
            s.close()
        codes = [a for a, _ in answers]
        # past the cap: 503 at once; the first three: 408 once their deadline passes, connection closed
        assert codes == [b"408", b"408", b"408", b"503", b"503"], answers
        assert max(t for _, t in answers) < 5
        # the service is free again
        r = httpx.post(url + "/v1/predict", files={"files": ("a.jpg", _jpeg(shape_image("square", 2)), "image/jpeg")})
        assert r.status_code == 200 and r.json()["results"][0]["label"] == "square"
        assert httpx.get(url + "/healthz").json()["active"] == 0


@pytest.fixture(scope="module")
def client(trained_run):
    with TestClient(create_app(trained_run, limits=Limits(max_files=4, max_upload_bytes=2_000_000)),
                    raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_every_asset_from_the_app_itself(client, page):
    html = client.get(page).text
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    refs += re.findall(r"""url\s*:\s*["']([^"']+)["']""", html)  # Swagger UI's openapi url
    assert refs and not [r for r in refs if re.match(r"(https?:)?//", r)], refs
    for ref in refs:
        assert client.get(ref).status_code == 200, ref


def test_model_info_names_the_run_not_the_server_path(client, trained_run):
    info = client.get("/v1/model").json()
    assert info["model"] == trained_run.name and str(trained_run.parent) not in str(info)


def test_the_service_and_the_files_share_one_set_of_image_limits(trained_run, tmp_path, monkeypatch):
    from wardrobe.data.images import ImageError, load_image

    strip = Image.new("RGB", (3000, 60), (200, 30, 30))
    path = tmp_path / "strip.png"
    strip.save(path)
    with pytest.raises(ImageError) as err:
        load_image(path)
    buf = io.BytesIO()
    strip.save(buf, format="PNG")
    with TestClient(create_app(trained_run)) as c:
        res = c.post("/v1/predict", files={"files": ("strip.png", buf.getvalue(), "image/png")}).json()["results"][0]
    assert res["error"]["message"] == err.value.reason == "3000x60: aspect ratio above 25:1"
    # configured once, for both
    monkeypatch.setenv("WARDROBE_MAX_ASPECT", "60")
    assert load_image(path).size == (3000, 60)
    with TestClient(create_app(trained_run)) as c:
        res = c.post("/v1/predict", files={"files": ("strip.png", buf.getvalue(), "image/png")}).json()["results"][0]
    assert res["status"] == "ok"
    assert Limits().image == ImageLimits(max_aspect=60.0)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(trained_run):
    import hypothesis
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    app = create_app(trained_run, limits=Limits(max_files=4, max_upload_bytes=1_000_000))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ran = []
    for op in schema.get_all_operations():
        operation = op.ok()

        @hypothesis.settings(max_examples=25, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=operation.as_strategy())
        def check(case):
            response = case.call()
            case.validate_response(response, checks=(not_a_server_error, response_schema_conformance, status_code_conformance,
                                                   content_type_conformance))
            ran.append((case.path, response.status_code))

        check()
    paths = [p for p, _ in ran]
    assert {"/healthz", "/v1/model", "/v1/predict"} <= set(paths) and paths.count("/v1/predict") >= 20
    assert all(code < 500 for _, code in ran)
