"""Fine-tuning throughput of EfficientNet-Lite0 at 224 px (train images/s) with and without the
decoded-image cache, in one run, through the same Lightning module and loaders `wardrobe train`
uses. Run: WARDROBE_DATA_DIR=../shared/data .venv/bin/python bench/finetune_speed.py [--batches 30]"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import lightning as L
import numpy as np
import torch

from wardrobe.data import load_dataset
from wardrobe.data.pixelcache import CachedPhotos, DecodedPhotos, PixelCache, digests_for
from wardrobe.models.heads import set_head
from wardrobe.models.registry import create_backbone
from wardrobe.settings import default_workers
from wardrobe.training.augment import train_transform
from wardrobe.training.config import fit_config
from wardrobe.training.datamodule import loader
from wardrobe.training.losses import make_loss
from wardrobe.training.module import ClassifierModule


class Speed(L.Callback):
    def __init__(self, skip: int):
        self.skip, self.t0, self.n = skip, None, 0

    def on_train_batch_start(self, trainer, module, batch, i):
        if i == self.skip:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, i):
        if i >= self.skip:
            self.n += len(batch[1])

    def rate(self) -> float:
        return self.n / (time.perf_counter() - self.t0)


def measure(dataset, cfg, k, batches: int, workers: int) -> float:
    bb = create_backbone("efficientnet_lite0")
    model = set_head(bb.model, k).train()
    module = ClassifierModule(model, k, cfg, make_loss("ce", np.array([0]), k, 0.1))
    speed = Speed(skip=3)  # the first batches include worker start-up
    trainer = L.Trainer(max_epochs=1, limit_train_batches=batches, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[speed], accelerator="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader(dataset, cfg.batch_size, workers, shuffle=True))
    return speed.rate()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--workers", type=int, default=default_workers(training=True))
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, loader workers {args.workers}")
    ds = load_dataset("clothing-top10")
    recs = ds.split("train")
    labels = [ds.classes.index(r.label) for r in recs]
    cfg = fit_config(mode="finetune", batch_size=32)
    bb = create_backbone("efficientnet_lite0")
    pre = bb.preprocess
    tf = train_transform(cfg.augment, pre)
    cache = PixelCache(pre.resize_to, pre.interpolation)
    digests = digests_for([r.path for r in recs])
    t0 = time.perf_counter()
    cache.fill([r.path for r in recs], digests, show_progress=False)
    print(f"pixel cache ready in {time.perf_counter() - t0:.1f} s ({len(recs)} photos)")
    k = len(ds.classes)
    cached = measure(CachedPhotos(cache, digests, labels, tf), cfg, k, args.batches, args.workers)
    decoded = measure(DecodedPhotos([r.path for r in recs], labels, pre.resize_to, tf), cfg, k, args.batches, args.workers)
    print(f"fine-tune Lite0 224 px, batch 32, standard augmentation: {cached:.1f} train images/s with the "
          f"decoded-image cache, {decoded:.1f} without (JPEG decode every epoch)")


if __name__ == "__main__":
    main()
