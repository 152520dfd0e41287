"""Speed: single-photo latency and batch throughput of a model file, with and without JPEG decoding."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wardrobe.data.images import load_image
from wardrobe.inference.classifier import Classifier
from wardrobe.models.runtime import input_hw


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's name, with its family/model and widest vector extension when /proc/cpuinfo gives
    them: cloud hosts name every generation "AMD EPYC", yet an AVX2 one and an AVX-512 VNNI one
    here run the same ONNX model at 9.6 and 5.5 ms (p50), so a timing must say which it came from."""
    try:
        info = {}
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first processor's block is enough
            info.setdefault(key.strip(), value.strip())
    except OSError:
        info = {}
    name = info.get("model name")
    if not name:
        return platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    isa = next((label for flag, label in (("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"),
                                          ("avx2", "AVX2")) if flag in flags), None)
    detail = [f"family {info['cpu family']} model {info['model']}"] if "cpu family" in info and "model" in info else []
    detail += [isa] if isa else []
    return f"{name} ({', '.join(detail)})" if detail else name


def synthetic_photos(folder: Path, n: int = 32, size: tuple[int, int] = (600, 800), seed: int = 0) -> list[Path]:
    """Camera-like JPEGs (smooth gradients plus grain) for timing when no photos are given."""

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(n):
        base = rng.uniform(40, 215, size=3)
        img = base + 30 * np.sin(xx[..., None] / rng.uniform(20, 80) + rng.uniform(0, 6, size=3)) \
            + 30 * np.cos(yy[..., None] / rng.uniform(20, 80)) + rng.normal(0, 6, size=(h, w, 3))
        p = folder / f"photo_{i:03d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def bench(model, images: Sequence[str | Path] | None = None, runtime: str = "auto", batch_size: int = 32,
          single_runs: int = 50, batch_runs: int = 5, warmup: int = 3) -> dict:
    """``model``: run folder, model file or Classifier. Decoding runs in this process (no workers),
    so "with decoding" is what one caller labelling one photo at a time pays."""

    clf = model if isinstance(model, Classifier) else Classifier.load(model, runtime=runtime)
    pre = clf.preprocess
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(p) for p in images] if images else synthetic_photos(Path(tmp), n=batch_size)
        if not paths:
            raise ValueError("no photos to time")
        paths = (paths * (batch_size // len(paths) + 1))[:max(batch_size, len(paths))]
        decode = lambda p: pre.pixels(load_image(p, min_side=pre.resize_to))  # noqa: E731
        pixels = [decode(p) for p in paths[:batch_size]]
        batch = torch.stack(pixels)
        for _ in range(warmup):
            clf.probs_from_pixels(batch[:1])
            clf.probs_from_pixels(batch)

        single_model, single_decode = [], []
        for i in range(single_runs):
            p = paths[i % len(paths)]
            t0 = time.perf_counter()
            x = decode(p).unsqueeze(0)
            t1 = time.perf_counter()
            clf.probs_from_pixels(x)
            t2 = time.perf_counter()
            single_decode.append(t2 - t0)
            single_model.append(t2 - t1)

        batch_model, batch_decode = [], []
        for _ in range(batch_runs):
            t0 = time.perf_counter()
            xb = torch.stack([decode(p) for p in paths[:batch_size]])
            t1 = time.perf_counter()
            clf.probs_from_pixels(xb)
            t2 = time.perf_counter()
            batch_decode.append(t2 - t0)
            batch_model.append(t2 - t1)
        sizes = sorted({load_image(p).size for p in paths[:4]})

    runner = clf.runner
    runtime_name = type(runner).__name__.replace("Runner", "").lower()
    threads = {"torch_intra_op": torch.get_num_threads()}
    if runtime_name == "onnx":
        opts = runner.session.get_session_options()
        threads["onnxruntime_intra_op"] = opts.intra_op_num_threads or os.cpu_count()
    return {
        "model": clf.meta.get("backbone") or clf.meta.get("arch"), "runtime": runtime_name,
        "input_size": pre.input_size, "input_hw": list(pre.hw), "photos": "given" if images else "synthetic 800x600 JPEG",
        "photo_sizes": [list(s) for s in sizes], "tta": clf.tta,
        "single": {"runs": single_runs,
                   "model_only_ms": {"p50": _pct(single_model, 50), "p95": _pct(single_model, 95)},
                   "with_decoding_ms": {"p50": _pct(single_decode, 50), "p95": _pct(single_decode, 95)}},
        "batch": {"size": batch_size, "runs": batch_runs,
                  "model_only_photos_per_s": batch_size / float(np.median(batch_model)),
                  "with_decoding_photos_per_s": batch_size / float(np.median(batch_decode))},
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": threads,
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
    }


def params_and_mflops(model: torch.nn.Module, input_size: int | tuple[int, int]) -> tuple[int, float]:
    """Parameter count and millions of floating-point operations for one photo (a multiply-add
    counts as 2, as torch's FlopCounterMode does)."""
    from torch.utils.flop_counter import FlopCounterMode  # heavy: torch, only on this path

    params = sum(p.numel() for p in model.parameters())
    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *input_hw(input_size)))
    return int(params), counter.get_total_flops() / 1e6
