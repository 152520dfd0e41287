"""Milliseconds per photo of the best preset's colour jitter (torchvision's ColorJitter against
ColorMatrixJitter, on a 224 px uint8 photo) and of loading one training photo of the preset (pixel
cache read and the whole augmentation) with either jitter.

Run: .venv/bin/python bench/jitter_speed.py [--photos 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

from wardrobe.data import load_dataset
from wardrobe.models.registry import create_backbone
from wardrobe.training import augment
from wardrobe.training.config import BEST, fit_config
from wardrobe.training.datamodule import PhotoDataModule
from wardrobe.training.finetune import resolve_aspect


def ms_per_call(fn, n: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=300)
    args = ap.parse_args()
    if not os.environ.get("WARDROBE_DATA_DIR") and Path("../shared/data").is_dir():
        os.environ["WARDROBE_DATA_DIR"] = str(Path("../shared/data").resolve())
    torch.set_num_threads(os.cpu_count() or 2)
    c = BEST.augment.color_jitter
    x = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
    for name, jitter in (("torchvision ColorJitter", v2.ColorJitter),
                         ("ColorMatrixJitter", augment.ColorMatrixJitter)):
        op = jitter(brightness=c, contrast=c, saturation=c, hue=c / 4)
        print(f"{name:24s} {ms_per_call(lambda op=op: op(x), args.photos):5.2f} ms a photo", flush=True)
    ds = load_dataset("clothing-top10")
    cfg = dataclasses.replace(fit_config(BEST), workers=0)
    pre = cfg.view(create_backbone(cfg.model, pretrained=False).preprocess, resolve_aspect(cfg, ds))
    own = augment.ColorMatrixJitter
    for name, jitter in (("torchvision ColorJitter", v2.ColorJitter), ("ColorMatrixJitter", own)):
        augment.ColorMatrixJitter = jitter  # train_transform builds whichever this names
        dm = PhotoDataModule(ds, cfg, pre, show_progress=False)
        dm.prepare_data()
        dm.setup("fit")
        photos = dm.train_set
        n = min(args.photos, len(photos))
        t = time.perf_counter()
        for i in range(n):
            photos[i]
        print(f"loading a training photo, {name}: {(time.perf_counter() - t) / n * 1000:.2f} ms", flush=True)
    augment.ColorMatrixJitter = own


if __name__ == "__main__":
    main()
