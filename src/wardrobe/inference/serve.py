"""The HTTP service: ``create_app(model)`` returns a FastAPI app; ``wardrobe serve`` runs it in uvicorn.

Hardening, in the order a request meets it:
- ``UploadGuard`` admits at most ``max_active_requests`` requests at a time (uploading, waiting or
  being labelled; 503 at once beyond), streams each body on with a byte limit (413) and a deadline for
  the whole body (408), so a client that announces a large body and stops sending is dropped;
- each photo is opened by PIL restricted to photo formats (no EPS/PDF plug-ins) and its header
  checked against the one set of image limits (``ImageLimits``) before decoding; it is decoded under a
  process-wide ``DecodeBudget`` and shrunk at once, one photo after another, and labelled in
  bounded batches, so decoded pixels are bounded per request and across requests;
- one bad photo gets an error entry in its place among the results; a 4xx is for a bad request
  (no files, too many, too large); every error body is JSON.

Memory ceiling: max_active_requests x max_upload_bytes (bodies) + decode_budget_bytes (pixels)
+ the model's inference batch; 8 x 20 MB + 256 MB with the defaults (README, "Serving").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
import warnings
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import anyio
import torch

# At module level: FastAPI resolves the endpoint's annotations (strings, under `from __future__
# import annotations`) against this module's globals.
from fastapi import File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as StarletteHTTPException

from wardrobe.data import images as _images  # noqa: F401 - sets PIL's LOAD_TRUNCATED_IMAGES = False
from wardrobe.data.images import DecodeBudget, ImageLimits, decode_failure_reason, decode_opened
from wardrobe.inference.api_schema import ApiError, ErrorResponse, PredictResponse, error_body
from wardrobe.inference.classifier import Classifier
from wardrobe.inference.guard import Gauge, UploadGuard
from wardrobe.inference.rows import make_row
from wardrobe.ui import info
from wardrobe.version import __version__

# Photo formats only: PIL's other plug-ins (EPS runs Ghostscript, PDF, ICNS...) are attack surface.
# Image.init() registers every plug-in first: open(formats=...) looks each name up in Image.OPEN.
Image.init()
FORMATS = [f for f in ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF") if f in Image.OPEN]


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024   # whole request body
    max_files: int = 32                        # photos per request
    image: ImageLimits = field(default_factory=ImageLimits.from_env)  # shared with train/predict/audit
    max_top_k: int = 100
    max_active_requests: int = 8               # uploading, waiting or being labelled; 503 beyond
    upload_timeout_s: float = 60.0             # the whole body must arrive within this (408)
    decode_budget_bytes: int = 256 * 1024 * 1024  # decoded pixels across all requests at once
    batch_size: int = 16                       # photos per inference batch


def _size(file) -> int:
    file.seek(0, 2)
    n = file.tell()
    file.seek(0)
    return n


def decode_upload(file, filename: str, limits: Limits, min_side: int | None = None,
                  budget: DecodeBudget | None = None) -> Image.Image:
    """One upload (a binary file object) -> 8-bit RGB photo, EXIF orientation applied, shrunk early
    towards ``min_side``; or an ApiError whose code and message go into that file's result."""
    if _size(file) == 0:
        raise ApiError(415, "empty_file", "empty file (0 bytes)", filename)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(file, formats=FORMATS)
            if (bad := limits.image.check(*img.size)) is not None:
                raise ApiError(422, *bad, filename)
            return decode_opened(img, min_side, budget)
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


def _runtime_name(runner) -> str:
    return "torch" if type(runner).__name__ == "TorchRunner" else "onnx"


def _libc_trim():
    """glibc's malloc_trim: hands freed heap pages back to the system after a request, so the memory
    of a burst of large photos is not kept for the life of the server (None elsewhere)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):
        return None


_TRIM = _libc_trim()
TRIM_AFTER_BYTES = 64 * 1024 * 1024


class Service:
    """The model, its bounded worker pool and decode budget; shared by every request."""

    def __init__(self, clf, limits: Limits, workers: int, info: dict):
        self.clf, self.limits, self.info = clf, limits, info
        self.limiter = anyio.CapacityLimiter(max(1, workers))
        self.budget = DecodeBudget(limits.decode_budget_bytes)
        self.served = 0
        self._trimmed_at = 0

    def release_memory(self) -> None:
        """Hand freed heap pages back to the system once large photos have gone through (not after
        every small one: the trim walks the heap)."""
        if _TRIM is not None and self.budget.total - self._trimmed_at > TRIM_AFTER_BYTES:
            self._trimmed_at = self.budget.total
            _TRIM(0)

    def predict_files(self, uploads: list[tuple[str, object]], top_k: int) -> list[dict]:
        """Runs in a worker thread: each photo decoded and shrunk in turn (its own error entry when
        it cannot be), labelled in batches of ``limits.batch_size``; results in upload order."""
        pre = self.clf.preprocess
        results: list[dict] = []
        pending: list[tuple[int, str, torch.Tensor, tuple[int, int]]] = []
        for name, file in uploads:
            try:
                img = decode_upload(file, name, self.limits, pre.resize_to, self.budget)
            except ApiError as exc:
                results.append({"status": "error", "filename": name,
                                "error": {"code": exc.code, "message": exc.message}})
                continue
            pending.append((len(results), name, pre.pixels(img), img.size))
            results.append({})
            del img
            if len(pending) == self.limits.batch_size:
                self._label(pending, results, top_k)
        self._label(pending, results, top_k)
        return results

    def _label(self, pending: list, results: list[dict], top_k: int) -> None:
        if not pending:
            return
        probs = self.clf.probs_from_pixels(torch.stack([t for _, _, t, _ in pending]))
        for (i, name, _, (w, h)), p in zip(pending, probs):
            row = make_row(name, p, self.clf.classes, top_k, None)
            results[i] = {"status": "ok", "filename": name, "label": row["label"], "prob": row["prob"],
                          "top_k": [{"label": l, "prob": q} for l, q in row["top_k"]], "width": w, "height": h}
        pending.clear()


def run_name(model: str | Path) -> str:
    """The name a client sees for a model: its run folder's name, never the server's paths."""
    p = Path(model)
    return p.parent.name if p.name == "model.safetensors" and p.parent.name else p.name


ERRORS = {s: {"model": ErrorResponse} for s in (400, 408, 413, 422, 503)}


def create_app(model, runtime: str = "auto", limits: Limits | None = None, workers: int = 2,
               warm_up: bool = True):
    """A FastAPI app serving MODEL (run folder, model file, exported .onnx, or a loaded Classifier)."""
    limits = limits or Limits()
    from_file = isinstance(model, (str, Path))
    clf = Classifier.load(Path(model).expanduser(), runtime=runtime) if from_file else model
    source = run_name(model) if from_file else "<in-memory>"
    meta = clf.meta  # the file's description (model file or ONNX metadata), read once by Classifier.load
    if warm_up:  # export / load the runtime now, not on the first request
        clf.probs_from_pixels(torch.zeros(1, 3, *clf.preprocess.hw, dtype=torch.uint8))
    info = {"model": source, "classes": list(clf.classes), "backbone": meta.get("arch"),
            "metrics": meta.get("metrics") or {}, "preprocess": meta.get("preprocess"),
            "runtime": _runtime_name(clf.runner),
            "version": {"wardrobe": __version__, "model_format": meta.get("format_version"),
                        "model_created": meta.get("created"), "quantization": meta.get("quantization", "none")},
            "limits": asdict(limits)}
    service = Service(clf, limits, workers, info)

    # The /docs and /redoc pages' scripts and styles come from the installed package, not a CDN.
    app = FastAPIOffline(title="wardrobe", version=__version__,
                         description="Label clothing photos with a trained wardrobe model.")
    app.state.service = service
    gauge = Gauge()
    app.add_middleware(UploadGuard, max_bytes=limits.max_upload_bytes, max_active=limits.max_active_requests,
                       timeout_s=limits.upload_timeout_s, gauge=gauge)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(error_body(exc.code, exc.message, exc.filename), status_code=exc.status)

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
        return {"status": "ok", "active": gauge.active, "served": service.served}

    @app.get("/v1/model")
    async def model_info():
        return service.info

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(files: list[UploadFile] = File(..., description="One or several photos."),
                      top_k: int | None = Query(None, ge=1, description="Labels per photo (default 3)."),
                      top_k_form: int | None = Form(None, alias="top_k", ge=1)):
        k = top_k or top_k_form or 3
        k = max(1, min(k, len(clf.classes), limits.max_top_k))
        if len(files) > limits.max_files:
            raise ApiError(413, "too_many_files", f"{len(files)} files; at most {limits.max_files} per request")
        uploads = [(f.filename or f"file{i}", f.file) for i, f in enumerate(files)]
        t0 = time.perf_counter()
        try:
            results = await anyio.to_thread.run_sync(service.predict_files, uploads, k, limiter=service.limiter)
        finally:
            service.release_memory()
        service.served += len(results)
        return {"results": results, "model": {"backbone": info["backbone"], "runtime": info["runtime"]},
                "seconds": round(time.perf_counter() - t0, 5)}

    return app


def serve(model, host: str = "127.0.0.1", port: int = 8000, runtime: str = "auto", workers: int = 2,
          limits: Limits | None = None, log_level: str = "info") -> None:
    import uvicorn  # optional at import: uvicorn, only when serving


    app = create_app(model, runtime=runtime, limits=limits, workers=workers)  # a bad model fails here, first
    info(f"serving {run_name(model)} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5,
                limit_concurrency=max(64, 4 * workers + 64))


__all__ = ["ApiError", "Limits", "UploadGuard", "create_app", "decode_upload", "serve"]
