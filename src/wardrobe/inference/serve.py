"""The HTTP service: ``create_app(model)`` returns a FastAPI app; ``wardrobe serve`` runs it in uvicorn.

Hardening, in the order a request meets it:
- the request body is read by ``BodyLimit`` up to ``max_upload_bytes`` and refused with 413 past
  that, before any multipart parsing or temporary file;
- each upload is opened by PIL restricted to photo formats (no EPS/PDF plug-ins), its header's
  width x height checked against the pixel, side and aspect-ratio limits *before* decoding (a PNG
  decompression bomb is refused from its header: 422), then decoded with truncated data an error;
- decoding and inference run in worker threads bounded by a CapacityLimiter, so the event loop
  keeps answering /healthz; past ``max_pending`` waiting requests the service answers 503 at once;
- every error is JSON: ``{"error": {"code", "message", "filename"}, "detail": message}``.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import anyio
# At module level: FastAPI resolves the endpoint's annotations (strings, under `from __future__
# import annotations`) against this module's globals.
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
import torch
from PIL import Image, UnidentifiedImageError

from wardrobe.data import images as _images  # noqa: F401 - sets PIL's LOAD_TRUNCATED_IMAGES = False
from wardrobe.data.images import decode_failure_reason, decode_opened
from wardrobe.inference.batch import make_row

# Photo formats only: PIL's other plug-ins (EPS runs Ghostscript, PDF, ICNS...) are attack surface.
# Image.init() registers every plug-in first: open(formats=...) looks each name up in Image.OPEN.
Image.init()
FORMATS = [f for f in ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF") if f in Image.OPEN]


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024   # whole request body
    max_files: int = 32                        # photos per request
    max_pixels: int = 40_000_000               # width x height from the header, before decoding
    max_side: int = 12_000
    # The centre-crop resize scales the shorter side to ~256 px: a 20000 x 20 strip would become a
    # 256,000 x 256 intermediate image, so extreme aspect ratios are refused too.
    max_aspect: float = 25.0
    max_top_k: int = 100


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, filename: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.filename = status, code, message, filename


def error_body(code: str, message: str, filename: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "filename": filename}, "detail": message}


def decode_upload(data: bytes, filename: str, limits: Limits, min_side: int | None = None) -> Image.Image:
    """Bytes of one upload -> 8-bit RGB photo, EXIF orientation applied, or an ApiError."""
    if not data:
        raise ApiError(415, "empty_file", "empty file (0 bytes)", filename)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            w, h = img.size
            if w <= 0 or h <= 0:
                raise ApiError(422, "corrupt_image", "image has no pixels", filename)
            if w * h > limits.max_pixels:
                raise ApiError(422, "too_many_pixels",
                               f"{w}x{h} is more than {limits.max_pixels:,} pixels", filename)
            if max(w, h) > limits.max_side:
                raise ApiError(422, "too_many_pixels", f"{w}x{h}: a side is longer than {limits.max_side} px",
                               filename)
            if max(w, h) / min(w, h) > limits.max_aspect:
                raise ApiError(422, "bad_aspect_ratio",
                               f"{w}x{h}: aspect ratio above {limits.max_aspect:g}:1", filename)
            return decode_opened(img, min_side)
    except ApiError:
        raise
    except UnidentifiedImageError:
        raise ApiError(415, "unsupported_media_type",
                       f"not a supported image (accepted: {', '.join(f for f in FORMATS if f != 'MPO')})",
                       filename) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(422, "too_many_pixels", "decompression bomb guard: too many pixels", filename) from None
    except OSError as exc:
        raise ApiError(422, "corrupt_image", decode_failure_reason(exc, 120), filename) from None
    except Exception as exc:  # noqa: BLE001 - PIL's parsers raise many types on hostile input; none may be a 500
        raise ApiError(422, "corrupt_image", f"cannot decode image ({type(exc).__name__}: {str(exc)[:120]})",
                       filename) from None


class BodyLimit:
    """ASGI middleware: reads a request body up to ``max_bytes`` and answers 413 past it, so nothing
    downstream (multipart parser, temporary files) ever holds more than the limit."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _reply(self, send, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = f"request body larger than {self.max_bytes:,} bytes"
        if length is not None:
            if not length.isdigit():
                return await self._reply(send, 400, "bad_request", "invalid Content-Length")
            if int(length) > self.max_bytes:
                return await self._reply(send, 413, "payload_too_large", too_big)
        chunks, total = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                return await self._reply(send, 413, "payload_too_large", too_big)
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        data, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _runtime_name(runner) -> str:
    return "torch" if type(runner).__name__ == "TorchRunner" else "onnx"


class Service:
    """The model plus its bounded worker pool; shared by every request."""

    def __init__(self, clf, limits: Limits, workers: int, max_pending: int, info: dict):
        self.clf, self.limits, self.info = clf, limits, info
        self.limiter = anyio.CapacityLimiter(max(1, workers))
        self.max_pending = max_pending
        self.pending = 0
        self.served = 0

    def predict_bytes(self, uploads: list[tuple[str, bytes]], top_k: int) -> list[dict]:
        """Runs in a worker thread: decode every upload (any bad one fails the request), then one batch."""
        pre = self.clf.preprocess
        photos = [decode_upload(data, name, self.limits, pre.resize_to) for name, data in uploads]
        pixels = torch.stack([pre.pixels(img) for img in photos])
        probs = self.clf._probs(pixels)
        out = []
        for (name, _), img, p in zip(uploads, photos, probs):
            row = make_row(name, p, self.clf.classes, top_k, None)
            out.append({"filename": name, "label": row["label"], "prob": row["prob"],
                        "top_k": [{"label": l, "prob": q} for l, q in row["top_k"]],
                        "width": img.width, "height": img.height})
        return out


def load_service_model(model: str | Path, runtime: str = "auto"):
    from wardrobe.inference.export import load_classifier, read_onnx_meta
    from wardrobe.models.modelfile import read_meta, resolve_model_path

    p = Path(model).expanduser()
    clf = load_classifier(p, runtime=runtime)
    meta = read_onnx_meta(p) if p.suffix.lower() == ".onnx" else read_meta(resolve_model_path(p))
    return clf, meta


def create_app(model, runtime: str = "auto", limits: Limits | None = None, workers: int = 2,
               max_pending: int = 64, warm_up: bool = True):
    """A FastAPI app serving MODEL (run folder, model file, exported .onnx, or a loaded Classifier)."""
    import wardrobe

    limits = limits or Limits()
    if isinstance(model, (str, Path)):
        clf, meta = load_service_model(model, runtime)
        source = str(model)
    else:
        clf, meta, source = model, dict(model.meta), "<in-memory>"
    if warm_up:  # export / load the runtime now, not on the first request
        size = clf.preprocess.input_size
        clf._probs(torch.zeros(1, 3, size, size, dtype=torch.uint8))
    info = {"model": source, "classes": list(clf.classes), "backbone": meta.get("arch"),
            "metrics": meta.get("metrics") or {}, "preprocess": meta.get("preprocess"),
            "runtime": _runtime_name(clf.runner),
            "version": {"wardrobe": wardrobe.__version__, "model_format": meta.get("format_version"),
                        "model_created": meta.get("created"), "quantization": meta.get("quantization", "none")},
            "limits": asdict(limits)}
    service = Service(clf, limits, workers, max_pending, info)

    app = FastAPI(title="wardrobe", version=wardrobe.__version__,
                  description="Label clothing photos with a trained wardrobe model.")
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse(error_body(exc.code, exc.message, exc.filename), status_code=exc.status,
                            headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse(error_body(f"http_{exc.status_code}", str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return JSONResponse(error_body("invalid_request", "; ".join(parts) or "invalid request"), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # a bug, still answered in JSON
        return JSONResponse(error_body("internal_error", f"{type(exc).__name__}"), status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(resources.files("wardrobe.inference").joinpath("static/index.html").read_text("utf-8"))

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "pending": service.pending, "served": service.served}

    @app.get("/v1/model")
    async def model_info():
        return service.info

    @app.post("/v1/predict")
    async def predict(files: list[UploadFile] = File(..., description="One or several photos."),
                      top_k: int | None = Query(None, ge=1, description="Labels per photo (default 3)."),
                      top_k_form: int | None = Form(None, alias="top_k", ge=1)):
        k = top_k or top_k_form or 3
        k = max(1, min(k, len(clf.classes), limits.max_top_k))
        if len(files) > limits.max_files:
            raise ApiError(413, "too_many_files", f"{len(files)} files; at most {limits.max_files} per request")
        if service.pending >= service.max_pending:
            raise ApiError(503, "busy", "too many requests waiting; retry shortly")
        service.pending += 1
        try:
            uploads = [(f.filename or f"file{i}", await f.read()) for i, f in enumerate(files)]
            t0 = time.perf_counter()
            results = await anyio.to_thread.run_sync(service.predict_bytes, uploads, k, limiter=service.limiter)
            service.served += len(results)
            return {"results": results, "model": {"backbone": info["backbone"], "runtime": info["runtime"]},
                    "seconds": round(time.perf_counter() - t0, 5)}
        finally:
            service.pending -= 1

    return app


def serve(model, host: str = "127.0.0.1", port: int = 8000, runtime: str = "auto", workers: int = 2,
          limits: Limits | None = None, log_level: str = "info") -> None:
    import uvicorn

    app = create_app(model, runtime=runtime, limits=limits, workers=workers)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5,
                limit_concurrency=max(64, 4 * workers + 64))


__all__ = ["ApiError", "BodyLimit", "Limits", "create_app", "decode_upload", "serve"]
