"""``wardrobe predict --devices N --strategy ddp``: Lightning's predict loop, each rank writing its
rows to a shard beside the output, merged in input order by rank 0."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from wardrobe.data.loader import PhotoDataset, collate_photos
from wardrobe.errors import WardrobeError
from wardrobe.inference.batch import BatchSummary, done_paths, merge_shards
from wardrobe.inference.classifier import Classifier
from wardrobe.inference.rows import make_row
from wardrobe.metrics import softmax
from wardrobe.settings import default_workers, quiet


class PredictModule(L.LightningModule):
    """Probabilities of a batch of pixels, as ``Classifier.probs_from_pixels`` computes them, on
    whatever device the rank has."""

    def __init__(self, clf: Classifier):
        super().__init__()
        self.clf, self.net = clf, clf.model

    def predict_step(self, batch, batch_idx):
        idx, pixels, bad = batch
        probs = None
        if len(idx):
            x = self.clf.preprocess.normalize(pixels.cpu()).to(self.device)
            if self.clf.tta:
                x = torch.cat([x, torch.flip(x, dims=[3])])
            p = softmax(self.net(x).float().cpu().numpy(), self.clf.temperature)
            if self.clf.tta:
                p = 0.5 * (p[: len(idx)] + p[len(idx):])
            probs = p.astype(np.float32)
        return idx.cpu(), probs, bad


class ShardWriter(BasePredictionWriter):
    """Each rank appends its rows (with their input index) to its own JSONL shard."""

    def __init__(self, shard_dir: Path, paths: list[str], classes: list[str], top_k: int):
        super().__init__(write_interval="batch")
        self.shard_dir, self.paths, self.classes, self.top_k = shard_dir, paths, classes, top_k
        self.stream = None

    def setup(self, trainer, pl_module, stage):
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        self.stream = (self.shard_dir / f"rank-{trainer.global_rank}.jsonl").open("w", encoding="utf-8")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        idx, probs, bad = prediction
        rows = [(i, make_row(self.paths[i], probs[j], self.classes, self.top_k, None)) for j, i in enumerate(idx.tolist())]
        rows += [(i, make_row(self.paths[i], None, self.classes, self.top_k, reason)) for i, reason in bad]
        for i, r in sorted(rows, key=lambda t: t[0]):
            self.stream.write(json.dumps({"index": i, **r}) + "\n")
        self.stream.flush()

    def teardown(self, trainer, pl_module, stage):
        if self.stream:
            self.stream.close()


def label_distributed(model, files, out, fmt, top_k, batch_size, workers, resume, tta, limit, show_progress,
                      devices, strategy, accelerator) -> BatchSummary:
    if out is None:
        raise WardrobeError("--devices/--strategy need --output FILE (each rank writes a shard beside it)")
    if isinstance(model, (str, Path)) and Path(model).suffix.lower() == ".onnx":
        raise WardrobeError(f"{model}: --devices runs the PyTorch model; pass the run folder or model file")
    clf = model if isinstance(model, Classifier) else Classifier.load(model, runtime="torch", tta=tta)
    top_k = max(1, min(top_k, len(clf.classes)))
    shard_dir = out.with_name(out.name + ".shards")
    # Every rank reads the same output file, so every rank agrees on what is left to do.
    had_rows = resume and out.is_file() and out.stat().st_size > 0
    done = done_paths(out, fmt, top_k) if had_rows else set()
    left = [p for p in files if p not in done]
    todo = left[:limit] if limit is not None else left
    summary = BatchSummary(total=len(files), skipped=len(files) - len(left), output=str(out))
    workers = default_workers() if workers is None else workers
    loader = DataLoader(PhotoDataset(todo, clf.preprocess), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=collate_photos)
    devices = int(devices) if str(devices).isdigit() else (devices or "auto")
    trainer = L.Trainer(accelerator=accelerator or "auto", devices=devices, strategy=strategy or "auto",
                        callbacks=[ShardWriter(shard_dir, todo, clf.classes, top_k)], logger=False,
                        enable_checkpointing=False, enable_progress_bar=show_progress and not quiet(),
                        enable_model_summary=False, use_distributed_sampler=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.predict(PredictModule(clf), loader, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.global_rank == 0:
        shards = sorted(shard_dir.glob("rank-*.jsonl"))
        summary.shards = [str(s) for s in shards]
        summary.written, summary.failed = merge_shards(shards, out, fmt, top_k, append=bool(done) or had_rows)
        for s in shards:
            s.unlink()
        try:
            shard_dir.rmdir()
        except OSError:
            pass
    trainer.strategy.barrier()
    summary.seconds = time.perf_counter() - t0
    summary.rank = trainer.global_rank
    return summary
