"""Fine-tuning a pretrained network, or training one from scratch, on Lightning."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from wardrobe.data.pixelcache import CachedPhotos, DecodedPhotos, PixelCache, digests_for
from wardrobe.data.sources import Dataset
from wardrobe.errors import WardrobeError
from wardrobe.metrics import compute_metrics, summary
from wardrobe.models.heads import set_head
from wardrobe.models.modelfile import MODEL_FILENAME, save_model
from wardrobe.models.registry import SCRATCH_MODELS, create_backbone
from wardrobe.training.augment import eval_transform, train_transform
from wardrobe.training.config import FitConfig
from wardrobe.training.engine import (
    ClassifierModule,
    EpochLog,
    FitScheduleToBudget,
    RankReport,
    ValTimer,
    loader,
    make_sampler,
    plot_curves,
)
from wardrobe.training.losses import make_loss
from wardrobe.ui import info, warn


def default_workers() -> int:
    # On 2 cores one worker keeps up with augmentation of cached pixels (bench/finetune_speed.py).
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def fit_network(ds: Dataset, out: Path, cfg: FitConfig, resume: bool = False, show_progress: bool = True,
                extra_callbacks=()) -> dict:
    """Train on ds's train split, select on its validation split, write the run folder. Returns
    the result metrics (also written to metrics.json)."""
    import lightning as L  # heavy: Lightning, only when training or predicting on devices
    from lightning.pytorch.callbacks import (  # heavy: Lightning, only when training or predicting on devices
        EarlyStopping,
        ModelCheckpoint,
        RichProgressBar,
    )
    from lightning.pytorch.loggers import CSVLogger  # heavy: Lightning, only when training or predicting on devices


    t0 = time.perf_counter()
    # Lightning's start-up notices (accelerator lines, tips) drown wardrobe's own progress lines.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    classes = ds.classes
    k = len(classes)
    pretrained = cfg.mode == "finetune"
    if cfg.drop_path and cfg.mode == "scratch" and cfg.model in SCRATCH_MODELS:
        raise WardrobeError(f"--drop-path applies to timm networks, not {cfg.model}")
    backbone = create_backbone(cfg.model, pretrained=pretrained, drop_path_rate=cfg.drop_path)
    pre = backbone.preprocess
    if cfg.image_size:
        pre = dataclasses.replace(pre, input_size=cfg.image_size)
    model = set_head(backbone.model, k, "linear").train()
    if cfg.drop_rate and hasattr(model, "drop_rate"):
        model.drop_rate = cfg.drop_rate  # timm models apply it before the classifier

    train_recs, val_recs = ds.split("train"), ds.split("validation")
    if not val_recs and cfg.patience:  # before the pixel cache is filled: minutes on a real dataset
        raise WardrobeError("--patience needs a validation split (early stopping watches its macro-F1)")
    recs = train_recs + val_recs
    digests = digests_for([r.path for r in recs])
    errors = {}
    cache = None
    if cfg.use_pixel_cache:
        cache = PixelCache(pre.resize_to, pre.interpolation, pre.resize_mode)
        errors = cache.fill([r.path for r in recs], digests, workers=cfg.workers, show_progress=show_progress)
    for i, reason in sorted(errors.items()):
        ds.skipped.add(recs[i].path, reason)
    if errors:
        warn(f"{len(errors)} photos could not be used: {ds.skipped.summary()}")
    index = {c: i for i, c in enumerate(classes)}
    n_tr = len(train_recs)
    keep = [i for i in range(len(recs)) if i not in errors]
    tr = [i for i in keep if i < n_tr]
    va = [i for i in keep if i >= n_tr]
    y_all = np.array([index[r.label] for r in recs])
    missing = [c for c in classes if not (y_all[tr] == index[c]).any()]
    if missing:
        raise WardrobeError(f"{ds.name}: class {', '.join(map(repr, missing))} has no usable training photo")

    def dataset(ids, transform):
        if cache is not None:
            return CachedPhotos(cache, [digests[i] for i in ids], y_all[ids], transform)
        return DecodedPhotos([recs[i].path for i in ids], y_all[ids], pre.resize_to, transform,
                             pre.interpolation, pre.resize_mode)

    workers = default_workers() if cfg.workers is None else cfg.workers
    train_ds = dataset(tr, train_transform(cfg.augment, pre, cfg.train_size))
    val_ds = dataset(va, eval_transform(pre)) if va else None
    sampler = make_sampler(y_all[tr], k, cfg)
    train_dl = loader(train_ds, cfg.batch_size, workers, shuffle=True, sampler=sampler)
    # No validation split (--val-ratio 0): every photo trains and the last epoch is the model.
    val_dl = loader(val_ds, max(cfg.batch_size, 64), workers) if va else None
    world = int(cfg.devices) if str(cfg.devices).isdigit() else 1
    steps = max(1, -(-len(sampler if sampler is not None else train_ds) // (cfg.batch_size * world)))
    loss = make_loss(cfg.loss, y_all[tr], k, cfg.label_smoothing, cfg.focal_gamma)
    module = ClassifierModule(model, k, cfg, loss, steps)

    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    epoch_log = EpochLog(out, cfg.overfit_gap, resume=resume)
    module.epoch_log = epoch_log
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_f1_macro" if va else None,
                                 mode="max", save_last=True, save_top_k=1)
    callbacks = [checkpoint, ValTimer(), RankReport(out), *extra_callbacks]
    if cfg.max_minutes and cfg.scheduler in ("onecycle", "cosine"):
        callbacks.append(FitScheduleToBudget(cfg.max_minutes * 60, steps))
    if cfg.ema:
        from lightning.pytorch.callbacks import (
            EMAWeightAveraging,  # heavy: Lightning, only when training or predicting on devices
        )

        # Validation, checkpoints (best.ckpt's state_dict) and the saved model all see the averaged
        # weights; the raw ones travel in the checkpoint too, so --resume continues both.
        callbacks.append(EMAWeightAveraging(decay=cfg.ema))
    if cfg.patience:
        callbacks.append(EarlyStopping(monitor="val_f1_macro", mode="max", patience=cfg.patience))
    if show_progress and os.environ.get("WARDROBE_QUIET") != "1":
        callbacks.append(RichProgressBar(leave=True))
    accelerator = cfg.accelerator
    trainer = L.Trainer(
        max_epochs=cfg.epochs, accelerator=accelerator, devices=cfg.devices, strategy=cfg.strategy,
        precision="bf16-mixed" if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda") else "32-true",
        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        logger=CSVLogger(out, name="logs"), callbacks=callbacks, num_sanity_val_steps=0,
        enable_model_summary=False, enable_progress_bar=show_progress and os.environ.get("WARDROBE_QUIET") != "1",
        log_every_n_steps=10, deterministic=False,
    )
    ckpt_path = None
    if resume:
        last = ckpt_dir / "last.ckpt"
        if not last.is_file():
            raise WardrobeError(f"--resume: no checkpoint to resume from ({last} not found)")
        read_checkpoint(last)  # one clear line for a foreign or corrupt file, before Lightning reads it
        ckpt_path = str(last)
        info(f"resuming from {last}")
    (out / "config.json").write_text(json.dumps(_config(ds, cfg, pre), indent=2, default=str))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")  # --val-ratio 0, on purpose
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")  # --resume writes beside its checkpoints
        try:
            trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt_path, weights_only=True)
        except SystemExit:
            # Lightning exits on Ctrl+C after saving what it can (and ignores SIGINT from then on).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if not trainer.interrupted:
                raise
    if trainer.interrupted:
        raise WardrobeError(f"training interrupted; continue it with --resume (last checkpoint in {ckpt_dir})")
    if not trainer.is_global_zero:
        return {}

    # The checkpoint this run's ModelCheckpoint reports, never a file that merely has the name.
    best = checkpoint.best_model_path
    if best:
        module.load_state_dict(read_checkpoint(Path(best))["state_dict"])
    model = module.model.to("cpu", memory_format=torch.contiguous_format).eval()
    metrics = compute_metrics(y_all[va], _predict(model, val_ds, workers), classes) if va else {}
    plot_curves(epoch_log.rows, out / "curves.png")
    epochs = epoch_log.rows
    if not epochs:
        best_epoch = None
    elif va:
        best_epoch = int(np.argmax([r["val_f1_macro"] for r in epochs]) + 1)
    else:
        best_epoch = len(epochs)
    result = {"split": "validation" if va else None, **metrics,
              "counts": {"train": len(tr), "validation": len(va)},
              "epochs": epochs, "best_epoch": best_epoch,
              "overfitting_warning": epoch_log.overfitting(),
              "timings": {"total_seconds": round(time.perf_counter() - t0, 2),
                          "train_images_per_s": [r["train_images_per_s"] for r in epochs]},
              "skipped": ds.skipped.to_dict()}
    meta = {"arch": backbone.arch, "head": "linear", "backbone": backbone.name, "weights": backbone.weights,
            "mode": cfg.mode, "classes": classes, "preprocess": pre.to_dict(), "temperature": 1.0,
            "metrics": {"validation": summary(metrics)} if va else {}, "train_config": _config(ds, cfg, pre)}
    save_model(out / MODEL_FILENAME, model, meta)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    seconds = result["timings"]["total_seconds"]
    if va:
        info(f"validation accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['f1_macro']:.4f} "
             f"(best epoch {best_epoch}, {seconds:.0f} s)")
    else:
        info(f"trained on all {len(tr)} photos (no validation split), kept epoch {best_epoch}; "
             f"({seconds:.0f} s)")
    return result


def read_checkpoint(path: Path) -> dict:
    """A Lightning checkpoint read with ``weights_only=True`` (tensors and plain containers only):
    a file carrying code is refused, never run; a foreign or damaged one is one line."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise WardrobeError(f"{path}: refused: it holds Python objects, not only weights (loading it could "
                                "run code); it is not a checkpoint wardrobe wrote") from None
        raise WardrobeError(f"{path}: not a readable checkpoint (corrupt or not a PyTorch file)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, zipfile errors... on junk
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise WardrobeError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict) or "epoch" not in ckpt:
        raise WardrobeError(f"{path}: not a wardrobe training checkpoint (no state_dict / epoch)")
    return ckpt


def _config(ds: Dataset, cfg: FitConfig, pre) -> dict:
    return {"mode": cfg.mode, "dataset": ds.description, "fit": cfg.to_dict(), "preprocess": pre.to_dict()}


@torch.inference_mode()
def _predict(model: torch.nn.Module, ds, workers: int) -> np.ndarray:

    out = []
    for x, _ in loader(ds, 64, workers):
        out.append(torch.softmax(model(x).float(), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))
