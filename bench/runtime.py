"""Photos/s of EfficientNet-Lite0 (224 px, batch 32, decoding excluded): ONNX Runtime vs eager
PyTorch, contiguous and channels-last; then single-photo latency of the exported graph with its
"same" pads as Pad nodes against the pads folded into the Convs, in interleaved blocks (this VM's
speed drifts by more than the difference, so the two are timed turn by turn).
Run: .venv/bin/python bench/runtime.py"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from wardrobe.evaluation.speed import cpu_model
from wardrobe.models import create_backbone
from wardrobe.models.runtime import OnnxRunner, export_onnx


def rate(fn, x, seconds=4.0) -> float:
    fn(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, torch threads {torch.get_num_threads()}")
    bb = create_backbone("efficientnet_lite0")
    x = torch.randn(32, 3, 224, 224)
    model = bb.model.eval()
    with torch.inference_mode():
        print(f"eager PyTorch, contiguous:    {rate(model, x):6.1f} photos/s")
        cl = model.to(memory_format=torch.channels_last)
        print(f"eager PyTorch, channels-last: {rate(lambda t: cl(t.to(memory_format=torch.channels_last)), x):6.1f} photos/s")
    ort = OnnxRunner(model.to(memory_format=torch.contiguous_format), 224, {"bench": "lite0-backbone"})
    print(f"ONNX Runtime:                 {rate(ort, x):6.1f} photos/s")
    one = x[:1]
    ort(one)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        ort(one)
        times.append(time.perf_counter() - t0)
    print(f"ONNX Runtime single photo: p50 {np.percentile(times, 50) * 1000:.1f} ms")
    pads_ab(model)


def pads_ab(model, rounds: int = 12, block: int = 50) -> None:
    import tempfile

    import onnxruntime as ort

    one = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    sessions = {}
    with tempfile.TemporaryDirectory() as d:
        for name, fold in (("Pad nodes", False), ("pads in the Convs", True)):
            path = export_onnx(model, 224, Path(d) / f"{fold}.onnx", fold_pads=fold)
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    medians: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, sess in sessions.items():
            for _ in range(10):
                sess.run(None, {"pixels": one})
            times = []
            for _ in range(block):
                t0 = time.perf_counter()
                sess.run(None, {"pixels": one})
                times.append(time.perf_counter() - t0)
            medians[name].append(float(np.median(times)) * 1000)
    for name, m in medians.items():
        print(f"single photo, {name}: median of {rounds} interleaved {block}-run medians {np.median(m):.2f} ms "
              f"(fastest block {min(m):.2f} ms)")


if __name__ == "__main__":
    main()
