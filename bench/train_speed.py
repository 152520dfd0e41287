"""Training-step throughput of the best preset, today's path and each candidate side by side in one
run: photos/s of forward + backward + AdamW step, with the pixel-cache loading and augmentation of a
real DataLoader included (its worker runs beside the network, as in `wardrobe train`).

Run: .venv/bin/python bench/train_speed.py [--data clothing-top10] [--batches 8] [--rounds 4] [--only NAME,...]
The candidates train in turn, round after round; each prints its median photos/s and the median of its
per-round ratios to today's path (and their range).
Without the benchmark photos it makes synthetic ones (timings then only compare candidates).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

from wardrobe.data import assign_splits, load_dataset
from wardrobe.evaluation.speed import cpu_model, synthetic_photos
from wardrobe.models.heads import set_head
from wardrobe.models.registry import create_backbone
from wardrobe.training import augment
from wardrobe.training.config import BEST, fit_config
from wardrobe.training.datamodule import PhotoDataModule
from wardrobe.training.finetune import resolve_aspect
from wardrobe.training.frozen import FrozenPrefix, forward_rest, frozen_prefix_length
from wardrobe.training.module import ClassifierModule


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def extensions() -> str:
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
              "amx_int8", "avx_vnni"]
    return " ".join(f for f in wanted if f in cpu_flags()) or "none of " + " ".join(wanted)


def native_bf16() -> bool:
    """AVX-512 BF16 or AMX, and oneDNN's bf16 kernels for them: where bf16 autocast could pay."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check is None or check()) and bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def build(cfg):
    """The network as `wardrobe train` freezes it: ClassifierModule's own stage freezing and
    (with cfg.freeze_bn) batch-norm in inference mode."""
    backbone = create_backbone(cfg.model, pretrained=True)
    model = set_head(backbone.model, 10, "linear").train()
    module = ClassifierModule(model, 10, cfg)
    module.on_train_epoch_start()  # epoch 0 past any head-only epochs: the run's frozen stages
    model = model.to(memory_format=torch.channels_last)
    return backbone, model, frozen_prefix_length(model, module.final_trainable)


def candidate(name: str, ds, cfg, *, prefix: str = "torch", bf16: bool = False, train_size=None,
              threads: int | None = None, workers: int = 1, cached: bool = False, compile_rest: bool = False,
              bn_eval: bool = False, image_size: int | None = None, resize: str = "crop", trainable: str | None = None,
              freeze_depthwise: bool = False, aspect: str | None = None, tv_jitter: bool = False,
              fused: bool = False) -> dict:
    """Builds one candidate and returns {"name", "step": a function that trains ``n`` batches and
    returns photos/s, "compile_s"}; two warm-up batches have run."""
    n_threads = threads or os.cpu_count() or 2
    torch.set_num_threads(n_threads)
    # tv_jitter: torchvision's ColorJitter (hue through HSV), what every path used before session 33
    augment.ColorMatrixJitter = v2.ColorJitter if tv_jitter else JITTER
    # bn_eval: every batch-norm uses its ImageNet statistics; its scale and shift still train
    cfg = dataclasses.replace(cfg, train_size=train_size, workers=workers, freeze_bn=bn_eval, image_size=image_size,
                              resize=resize, trainable=trainable or cfg.trainable, freeze_depthwise=freeze_depthwise,
                              aspect=aspect)
    backbone, model, k = build(cfg)
    pre = cfg.view(backbone.preprocess, resolve_aspect(cfg, ds))
    dm = PhotoDataModule(ds, cfg, pre, show_progress=False)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    # fused: one kernel for the whole AdamW update, as `wardrobe train` uses since session 33
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], cfg.lr, fused=fused or None)
    ort_prefix = FrozenPrefix(model, k) if prefix == "onnx" else None

    def features(x):
        if ort_prefix is not None:
            return ort_prefix(x)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=prefix == "torch-bf16"):
            out = model.blocks[:k](model.bn1(model.conv_stem(x.contiguous(memory_format=torch.channels_last))))
        return out.float()

    rest = (lambda f: forward_rest(model, f, k))
    if compile_rest:
        rest = torch.compile(rest)
    store = []
    it = iter(loader)

    def batch(i: int) -> int:
        nonlocal it
        try:
            x, y = next(it)
        except StopIteration:  # an epoch is over: a new one, as a run would
            it = iter(loader)
            x, y = next(it)
        if cached:
            # The frozen prefix's output read back from memory: what an epoch costs once every view
            # a run will use has been computed (the cost of computing them is the prefix's).
            if len(store) < 2:
                store.append(features(x).clone())
            f = store[i % len(store)]
        else:
            f = features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = rest(f)
        loss = torch.nn.functional.cross_entropy(logits.float(), y % logits.shape[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return len(y)

    t = time.perf_counter()
    batch(0)
    compile_s = time.perf_counter() - t if compile_rest else None
    batch(1)

    def step(n: int) -> float:
        torch.set_num_threads(n_threads)
        t0, photos = time.perf_counter(), 0
        for i in range(n):
            photos += batch(i)
        return photos / (time.perf_counter() - t0)

    return {"name": name, "step": step, "compile_s": compile_s}


# "today": the path of the best preset before this benchmark (frozen stages in eager PyTorch,
# batch-norm statistics training, 240 px crops, one loader worker). "best preset now": what
# `--preset best` does since, automatically (session 17: the whole photo squashed into 272 px,
# 224 px training crops; session 26: the depthwise kernels frozen); "best preset, session 16": the
# centre square, 192 px training crops; "best preset session 25": the depthwise kernels training;
# "best preset 3:4 256x192 crops" and "... 264x198 crops": session 32's trials, 3:4 inputs of 320 x 240 px
# (--aspect 3:4 --image-size 277) trained on crops of 256 x 192 (--train-size 222) or 264 x 198 (229);
# "best preset session 32": the preset with torchvision's colour jitter (session 33 made it one matrix).
# "today" keeps torchvision's jitter too: the baseline stays the path the issue measured.
JITTER = augment.ColorMatrixJitter
NOW = {"prefix": "onnx", "bn_eval": True, "fused": True, "image_size": BEST.image_size, "train_size": BEST.train_size,
       "resize": BEST.resize, "workers": 0, "freeze_depthwise": BEST.freeze_depthwise, "aspect": BEST.aspect}
S25 = {**NOW, "freeze_depthwise": False, "tv_jitter": True, "fused": False}
CANDIDATES = {
    "today": {"tv_jitter": True},
    "best preset now": NOW,
    "best preset session 32": {**NOW, "tv_jitter": True, "fused": False},
    "best preset now last:6": {**NOW, "trainable": "last:6"},
    "best preset now+bf16": {**NOW, "bf16": True},
    "best preset now+bf16 prefix in torch": {**NOW, "prefix": "torch-bf16", "bf16": True},
    "best preset 3:4 256x192 crops": {**NOW, "aspect": "3:4", "image_size": 277, "train_size": 222},
    "best preset 3:4 264x198 crops": {**NOW, "aspect": "3:4", "image_size": 277, "train_size": 229},
    "best preset session 25": S25,
    "best preset session 25 last:6": {**S25, "trainable": "last:6"},
    "best preset, session 16": {"prefix": "onnx", "bn_eval": True, "train_size": 192, "workers": 0},
    "onnx-prefix": {"prefix": "onnx"},
    "bf16": {"bf16": True},
    "onnx-prefix+bf16": {"prefix": "onnx", "bf16": True},
    "onnx-prefix+fixres200": {"prefix": "onnx", "train_size": 200},
    "onnx-prefix+bf16+fixres200": {"prefix": "onnx", "bf16": True, "train_size": 200},
    "cached-prefix (steady state)": {"cached": True},
    "cached-prefix+bf16": {"cached": True, "bf16": True},
    "onnx-prefix+bn-eval": {"prefix": "onnx", "bn_eval": True},
    "onnx-prefix+bn-eval+fixres192": {"prefix": "onnx", "bn_eval": True, "train_size": 192},
    "onnx-prefix+bn-eval+fixres176": {"prefix": "onnx", "bn_eval": True, "train_size": 176},
    "onnx-prefix 1-thread": {"prefix": "onnx", "threads": 1},
    "onnx-prefix 0-workers": {"prefix": "onnx", "workers": 0},
    "onnx-prefix 2-workers": {"prefix": "onnx", "workers": 2},
    "onnx-prefix+torch.compile": {"prefix": "onnx", "compile_rest": True},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="clothing-top10")
    ap.add_argument("--batches", type=int, default=8, help="batches a candidate trains in each round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    if args.data == "clothing-top10" and not os.environ.get("WARDROBE_DATA_DIR") and Path("../shared/data").is_dir():
        os.environ["WARDROBE_DATA_DIR"] = str(Path("../shared/data").resolve())
    try:
        ds = load_dataset(args.data)
    except Exception:  # noqa: BLE001 - no benchmark photos: synthetic ones still compare candidates
        folder = Path(tempfile.mkdtemp())
        for c in range(4):
            synthetic_photos(folder / f"class{c}", n=24, seed=c)
        ds = load_dataset(folder)
        ds = assign_splits(ds, 0.15)
        print("(synthetic photos: the benchmark data was not found)")
    cfg = fit_config(BEST)
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}")
    print(f"vector extensions: {extensions()}; native bf16: {native_bf16()}")
    print(f"best preset: {cfg.model} {cfg.image_size or 'native'} px ({cfg.resize}, --aspect {cfg.aspect or 'square'}), "
          f"trainable {cfg.trainable}, batch {cfg.batch_size}; every candidate trains {args.batches} batches in "
          f"each of {args.rounds} rounds, in turn (after 2 warm-up batches)")
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    runs = []
    for name, kw in CANDIDATES.items():
        if only and name not in only and name != "today":
            continue
        try:
            runs.append(candidate(name, ds, cfg, **kw))
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run is a result too
            print(f"{name:32s} failed: {str(exc).splitlines()[0][:150]}")
    # The host's speed drifts by tens of percent over minutes (other tenants): taking the candidates
    # in turn, round after round, exposes each to the same drift, and each round's ratio to today's
    # path compares batches trained within a minute of each other.
    if not runs:
        raise SystemExit("no candidate could run")
    rates = {r["name"]: [] for r in runs}
    for _ in range(args.rounds):
        for r in runs:
            rates[r["name"]].append(r["step"](args.batches))
    base = rates[runs[0]["name"]]
    for r in runs:
        rs = rates[r["name"]]
        ratios = sorted(x / b for x, b in zip(rs, base))
        extra = f"  (compile {r['compile_s']:.0f} s)" if r["compile_s"] else ""
        print(f"{r['name']:32s} {statistics.median(rs):6.1f} photos/s  {statistics.median(ratios):4.2f}x  "
              f"(rounds {', '.join(f'{x:.1f}' for x in rs)}; ratio {ratios[0]:.2f}-{ratios[-1]:.2f}){extra}",
              flush=True)


if __name__ == "__main__":
    main()
