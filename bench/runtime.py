"""Photos/s of EfficientNet-Lite0 (224 px, batch 32, decoding excluded): ONNX Runtime vs eager
PyTorch, contiguous and channels-last. Run: .venv/bin/python bench/runtime.py"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch

from wardrobe.models import create_backbone
from wardrobe.models.runtime import OnnxRunner


def rate(fn, x, seconds=4.0) -> float:
    fn(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
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


if __name__ == "__main__":
    main()
