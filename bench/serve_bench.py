"""Serving figures in one run, on a real Lite0 probe model (train one first:
`wardrobe train clothing-top10 --out /tmp/top10-probe`):

1. single-photo latency, decoding excluded: the service's path (normalise -> ONNX Runtime ->
   softmax) on one preprocessed 224 px photo: fp32, int8-weights, static int8 (calibrated on 128
   training photos) and dynamic int8 exports, taking turns (see latency());
2. batch labelling of clothing-17 photos, JPEG decoding included: `wardrobe predict`'s streaming
   path (DataLoader workers + ONNX Runtime, CSV written as it goes) against a plain loop (PIL open
   -> torchvision transforms -> eager PyTorch model, batch 32), same photos, same run;
3. the service under load: `wardrobe serve` in its own process on 127.0.0.1, 8 clients x 200
   requests of one clothing photo each, p50/p95/p99.

Run: flock /tmp/wardrobe-bench.lock nice -n 0 .venv/bin/python bench/serve_bench.py --model /tmp/top10-probe
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def latency(model: Path, tmp: Path, photo: Path, runs: int, rounds: int = 6) -> None:
    """The exports take turns, ``runs // rounds`` consecutive calls each per round: this VM's speed
    drifts by up to 1.5x over tens of seconds, and one uninterrupted block per export would credit
    each with whichever phase it happened to get. p50/p95 over all its calls; the spread of its
    per-round p50 shows the drift."""
    from wardrobe.data.images import load_image
    from wardrobe.inference.classifier import Classifier
    from wardrobe.inference.export import calibration_photos, export_model

    exports = {}
    for name, scheme in (("fp32", None), ("int8 weights", "weights"), ("int8 static", "static"),
                         ("int8 dynamic", "dynamic")):
        # the model is a clothing-top10 one (module docstring): its training photos set the int8 ranges
        calib = calibration_photos("clothing-top10", 128) if scheme == "static" else None
        onnx = export_model(model, tmp / f"{name.replace(' ', '-')}.onnx", int8=scheme is not None, scheme=scheme,
                            calibrate=calib)
        clf = Classifier.load(onnx)
        pixels = clf.preprocess.pixels(load_image(photo, min_side=clf.preprocess.resize_to))[None]
        for _ in range(20):
            clf.probs_from_pixels(pixels)
        exports[name] = (onnx, clf, pixels, [])
    per_round = max(1, runs // rounds)
    for _ in range(rounds):
        for onnx, clf, pixels, times in exports.values():
            block = []
            for _ in range(per_round):
                t0 = time.perf_counter()
                clf.probs_from_pixels(pixels)
                block.append((time.perf_counter() - t0) * 1000)
            times.append(block)
    for name, (onnx, clf, _, blocks) in exports.items():
        times = np.concatenate(blocks)
        medians = [np.percentile(b, 50) for b in blocks]
        print(f"single photo, ONNX Runtime {name} ({clf.meta['quantization']}, "
              f"{onnx.stat().st_size / 1e6:.1f} MB), decode excluded: p50 {np.percentile(times, 50):.2f} ms, "
              f"p95 {np.percentile(times, 95):.2f} ms ({len(times)} runs in {rounds} rounds; "
              f"round p50 {min(medians):.2f}-{max(medians):.2f} ms)")


def plain_loop(model: Path, paths: list[str], batch_size: int = 32) -> float:
    """The obvious way: PIL open -> torchvision transforms -> eager PyTorch, batch by batch."""
    from PIL import Image
    from torchvision import transforms as T

    from wardrobe.models.modelfile import load_model

    net, meta = load_model(model)
    pre = meta["preprocess"]
    tf = T.Compose([T.Resize(int(pre["input_size"] / pre["crop_pct"]), interpolation=T.InterpolationMode.BICUBIC),
                    T.CenterCrop(pre["input_size"]), T.ToTensor(), T.Normalize(pre["mean"], pre["std"])])
    labels = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), batch_size):
            x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[i:i + batch_size]])
            labels += torch.softmax(net(x), dim=1).argmax(1).tolist()
    return time.perf_counter() - t0, labels


def batch_labelling(model: Path, tmp: Path, n: int, workers: int | None) -> None:
    import csv

    from wardrobe.data import load_dataset
    from wardrobe.inference.batch import label_photos

    ds = load_dataset("clothing-17")
    allpaths = [str(r.path) for r in ds.records]
    step = max(1, len(allpaths) // n) if n else 1
    paths = allpaths[::step][:n] if n else allpaths
    for p in paths:  # both sides read from the page cache
        Path(p).read_bytes()
    out = tmp / "labels.csv"
    t0 = time.perf_counter()
    s = label_photos(model, paths, out, batch_size=32, workers=workers, show_progress=False)
    ours = time.perf_counter() - t0  # model loading and ONNX session start included
    plain, plain_labels = plain_loop(model, paths)
    with out.open(newline="") as f:
        ours_labels = [r["label_1"] for r in csv.DictReader(f)]
    from wardrobe.models.modelfile import read_meta

    classes = read_meta(model)["classes"]
    agree = np.mean([classes[a] == b for a, b in zip(plain_labels, ours_labels)])
    print(f"batch labelling, {len(paths)} of {len(allpaths)} clothing-17 photos, JPEG decode included "
          f"({s.failed} unreadable):")
    print(f"  wardrobe predict (DataLoader workers + ONNX Runtime, CSV streamed): {ours:.1f} s = "
          f"{len(paths) / ours:.1f} photos/s")
    print(f"  plain loop (PIL -> torchvision -> eager PyTorch, batch 32):          {plain:.1f} s = "
          f"{len(paths) / plain:.1f} photos/s")
    print(f"  speed-up {plain / ours:.2f}x; top-1 labels agree on {agree:.4f} of photos")


def load_test(model: Path, photo: Path, clients: int, requests: int) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the load tester lives with the tests
    from loadtest import run_load, server_in_subprocess

    with server_in_subprocess(str(model)) as url:
        run_load(url, photo.read_bytes(), photo.name, clients=2, requests=10)  # warm-up
        res = run_load(url, photo.read_bytes(), photo.name, clients=clients, requests=requests, deadline_s=300)
    print(f"service load test ({clients} clients x {requests} requests, 127.0.0.1, wardrobe serve defaults): "
          f"{res.summary()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/tmp/top10-probe")
    ap.add_argument("--photos", type=int, default=960, help="clothing-17 photos to label (0: all)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--skip", nargs="*", default=[], choices=["latency", "batch", "load"])
    args = ap.parse_args()
    os.environ.setdefault("WARDROBE_QUIET", "1")
    from wardrobe.data.presets import dataset_root
    from wardrobe.evaluation.speed import cpu_model

    model = Path(args.model)
    photo = dataset_root() / "images" / "ea7b6656-3f84-4eb3-9099-23e623fc1018.jpg"  # a t-shirt
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, "
          f"torch threads {torch.get_num_threads()}; model {model}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "latency" not in args.skip:
            latency(model, tmp, photo, args.runs)
        if "batch" not in args.skip:
            batch_labelling(model, tmp, args.photos, args.workers)
        if "load" not in args.skip:
            load_test(model, photo, args.clients, args.requests)


if __name__ == "__main__":
    main()
