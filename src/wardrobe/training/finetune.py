"""Fine-tuning a pretrained network, or training one from scratch, on Lightning: the function that
builds the DataModule, the LightningModule, the callbacks and a Trainer, fits, and returns the run."""

from __future__ import annotations

import dataclasses
import logging
import signal
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger

from wardrobe.data.shapes import aspect_name, parse_aspect, typical_aspect
from wardrobe.data.sources import Dataset
from wardrobe.errors import WardrobeError
from wardrobe.metrics import compute_metrics, softmax
from wardrobe.models.heads import LogitsAndEmbedding, has_embedding, head_linear, set_head
from wardrobe.models.levels import use_levels
from wardrobe.models.registry import SCRATCH_MODELS, create_backbone
from wardrobe.models.weights import torch_load_tensors
from wardrobe.settings import quiet
from wardrobe.training.averaging import EpochAverage, MovingAverage
from wardrobe.training.callbacks import (
    EpochLog,
    FitScheduleToBudget,
    OverfitWarning,
    ProgressiveResize,
    RankReport,
    ValidationScores,
)
from wardrobe.training.config import LONG_TAIL_RATIO, FitConfig
from wardrobe.training.datamodule import PhotoDataModule, imbalance_of, loader
from wardrobe.training.frozen import FinishedNetwork, env_fast_path
from wardrobe.training.head_refit import refit_head
from wardrobe.training.module import ClassifierModule
from wardrobe.training.posthoc import cross_fitted_run, fit_logit_adjustment, macro_f1, taus_for
from wardrobe.training.probe import attach_head, default_levels, probe_init
from wardrobe.training.runfolder import RunResult
from wardrobe.training.schedules import ANNEALED
from wardrobe.ui import info

# Lightning's warnings that say what wardrobe does on purpose.
_EXPECTED = (".*does not have many workers.*", ".*number of training batches.*", ".*LeafSpec.*",
             ".*no `val_dataloader`.*", ".*exists and is not empty.*", ".*across ranks is zero.*")


def fit_network(ds: Dataset, out: Path, cfg: FitConfig, resume: bool = False, show_progress: bool = True,
                extra_callbacks=()) -> RunResult | None:
    """Train on ds's train split, select on its validation split; checkpoints, epochs.csv and
    curves.png go to ``out``. None on the ranks other than 0 of a multi-process run."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # its notices drown wardrobe's lines
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.drop_path and cfg.mode == "scratch" and cfg.model in SCRATCH_MODELS:
        raise WardrobeError(f"--drop-path applies to timm networks, not {cfg.model}")
    if not ds.split("validation") and cfg.patience:  # before the pixel cache is filled: minutes on real data
        raise WardrobeError("--patience needs a validation split (early stopping watches its macro-F1)")
    if cfg.weights and cfg.mode == "scratch":
        raise WardrobeError("--weights gives a pretrained start: use it with --mode finetune (or the probe)")
    backbone = create_backbone(cfg.model, pretrained=cfg.mode == "finetune", drop_path_rate=cfg.drop_path,
                               weights=cfg.weights)
    if cfg.levels is None:  # the preset's choice: the probe's levels on a pretrained network, none from scratch
        cfg = dataclasses.replace(cfg, levels=default_levels(backbone.model) if cfg.mode == "finetune" else 0)
    use_levels(backbone.model, cfg.levels)
    pre = cfg.view(backbone.preprocess, resolve_aspect(cfg, ds))
    # before the head exists: the network still returns its pooled embedding
    probe_head = probe_init(dataclasses.replace(backbone, preprocess=pre), ds, cfg, show_progress) \
        if cfg.head_init == "probe" and not resume else None
    model = (set_head(backbone.model, len(ds.classes), "linear") if probe_head is None
             else attach_head(backbone.model, *probe_head, "linear")).train()
    if cfg.drop_rate and hasattr(model, "drop_rate"):
        model.drop_rate = cfg.drop_rate  # timm models apply it before the classifier
    data = PhotoDataModule(ds, cfg, pre, show_progress)
    has_val = bool(ds.split("validation"))
    module = ClassifierModule(model, len(ds.classes), cfg)
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val_f1_macro" if has_val else None,
                           mode="max", save_last=not has_val, save_top_k=1, save_on_train_epoch_end=True)
    # Lightning's save_last writes last.ckpt only in an epoch that beat the best, so --resume would redo
    # every epoch after the best one: a second, unmonitored checkpoint keeps the latest epoch instead.
    latest = [ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1,
                              save_on_train_epoch_end=True)] if has_val else []
    epoch_log, overfit, scores = EpochLog(out), OverfitWarning(cfg.overfit_gap), ValidationScores()
    averager = [EpochAverage(cfg.average_from, cfg.average_below_ratio)] if cfg.average_from is not None else []
    trainer = _trainer(cfg, out, [ckpt, *latest, epoch_log, overfit, scores, RankReport(out), *averager,
                                  *_optional_callbacks(cfg, has_val), *extra_callbacks], show_progress)
    _fit(trainer, module, data, out / "checkpoints", resume)
    if not trainer.is_global_zero:
        return None
    extra = {"sampler": data.sampler_used}
    ema = next((c for c in trainer.callbacks if isinstance(c, MovingAverage)), None)
    if ema is not None:
        extra["ema_decay"] = ema.decay
    average = averager[0].average() if averager else None
    if average is not None:  # the model by rule: no epoch is chosen on the validation photos
        module.load_state_dict({**module.state_dict(), **average})
        extra["weight_average"] = {"epochs": averager[0].epochs}
        info(f"the model is the mean of the weights of epochs {averager[0].epochs[0]}-{averager[0].epochs[-1]}")
    elif ckpt.best_model_path:  # the checkpoint this run's ModelCheckpoint reports, never one that has the name
        module.load_state_dict(read_checkpoint(Path(ckpt.best_model_path))["state_dict"])
    model = module.model.to("cpu", memory_format=torch.contiguous_format).eval()
    probs, embeddings, refitted = _finished_scores(model, data, cfg, extra)
    graded, kept = probs, probs
    adjust = cfg.logit_adjust and imbalance_of(data.train_counts) >= cfg.adjust_min_ratio
    taus = taus_for(cfg.loss, data.sampler_used) if adjust else (0.0,)
    if adjust and probs is not None:
        probs, extra["logit_adjustment"] = _adjust_logits(model, probs, data, taus)
    if kept is not None:  # graded from the scores before the adjustment, as every epoch's are
        graded, extra["validation_figures"] = _graded(scores, kept, data, taus, out, average is not None, refitted)
    metrics = compute_metrics(data.val_labels, graded, ds.classes) if probs is not None else {}
    rows = epoch_log.rows
    best = (int(np.argmax([r["val_f1_macro"] for r in rows]) + 1) if has_val else len(rows)) if rows else None
    kept_model = "the weight average" if average is not None else f"{'best' if has_val else 'kept'} epoch {best}"
    model_epochs = list(averager[0].epochs) if average is not None else [best] if best else None
    if has_val:
        info(f"validation accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['f1_macro']:.4f} ({kept_model})")
    else:
        info(f"trained on all {len(data.train_ids)} photos (no validation split), {kept_model}")
    return RunResult(model, backbone, pre, "linear", {"fit": cfg.to_dict(), **extra}, metrics,
                     {"train": len(data.train_ids), "validation": len(data.val_ids)}, rows, best, model_epochs,
                     overfit.warned,
                     {"train_images_per_s": [r["train_images_per_s"] for r in rows]},
                     validation=(probs, data.val_labels) if probs is not None else None, embeddings=embeddings)


def _finished_scores(model, data: PhotoDataModule, cfg: FitConfig, extra: dict) -> tuple:
    """The finished network's validation probabilities, (training, validation) embeddings or None,
    and whether --head-refit mixed a second head in (then the probabilities are the mixed head's)."""
    probs, val_emb = predict_probs(model, data.val_set, data.workers) if data.val_set is not None else (None, None)
    train_emb = predict_probs(model, data.train_eval_set(), data.workers)[1] \
        if has_embedding(model) and (val_emb is not None or cfg.head_refit) else None
    refitted = False
    if cfg.head_refit and train_emb is not None:
        extra["head_refit"] = refit_head(model, train_emb, data.train_labels, cfg.head_refit)
        refitted = "skipped" not in extra["head_refit"]
        if refitted and val_emb is not None:
            with torch.no_grad():  # from the embeddings already computed
                probs = softmax(model.get_classifier()(torch.from_numpy(val_emb)).numpy())
        info(f"head refit: a logistic regression on the training photos' embeddings mixed in with weight "
             f"{extra['head_refit']['weight']:g}" + ("" if refitted else f" ({extra['head_refit']['skipped']})"))
    embeddings = (train_emb, val_emb) if train_emb is not None and val_emb is not None else None
    return probs, embeddings, refitted


def _adjust_logits(model, probs: np.ndarray, data: PhotoDataModule, taus) -> tuple[np.ndarray, dict]:
    """Post-hoc logit adjustment chosen on validation, folded into the head's bias so that every
    export of the model carries it. Returns the validation probabilities the adjusted model gives
    (calibration and trusted-label thresholds fit those) and the search."""
    tau, bias, search = fit_logit_adjustment(probs, data.val_labels, data.train_counts, taus)
    with torch.no_grad():
        head_linear(model).bias += torch.from_numpy(bias)
    info(f"logit adjustment: tau {tau} (validation macro-F1 " +
         ", ".join(f"{s['tau']}: {s['val_f1_macro']:.4f}" for s in search) + ")")
    return softmax(np.log(np.clip(probs, 1e-12, None)) + bias), {"tau": tau, "search": search}


def _graded(scores: ValidationScores, probs: np.ndarray, data: PhotoDataModule, taus,
            out: Path, averaged: bool = False, refitted: bool = False) -> tuple[np.ndarray, dict]:
    """The probabilities the run's validation figures are computed from. The best epoch and the
    tau were both chosen on the validation photos, so each half of them is graded with the epoch
    and tau the other half chose (posthoc.cross_fitted_run); a weight average is the model by rule,
    so only its tau is cross-fitted. Saved to validation_graded.npz with the photos' paths, for a
    CV's pooled figures, and every epoch's scores, for bench/epoch_average.py."""
    epochs = [p for p in scores.probabilities() if len(p) == len(probs)]
    every_epoch = bool(epochs) and len(epochs) == len(scores.epochs)  # not so with several processes
    per_epoch = {"epoch_probs": np.stack(epochs).astype(np.float16)} if every_epoch else {}
    refit = " and its refit head" if refitted else ""
    if averaged:
        epochs, how = [probs], f"the weight average{refit}, tau cross-fitted"
        per_epoch["average_probs"] = probs.astype(np.float16)
    elif every_epoch and not refitted:
        how = "epoch and tau cross-fitted"
    else:  # grade the kept model alone (its tau is still cross-fitted); a refit head has no epoch scores
        epochs = [probs]
        how = f"the kept epoch{refit}, tau cross-fitted"
    counts = data.train_counts
    graded, chosen = cross_fitted_run(epochs, data.val_labels, counts, taus)
    np.savez(out / "validation_graded.npz", paths=np.array([str(data.records[i].path) for i in data.val_ids]),
             labels=data.val_labels, probs=graded.astype(np.float32), **per_epoch)
    # how runs graded before (the kept model, only its tau cross-fitted), to compare with them
    kept = cross_fitted_run([probs], data.val_labels, counts, taus)[0].argmax(1)
    return graded, {"graded": how if len(chosen) == 2 else "with its own choice (too few photos to halve)",
                    "halves": [{"epoch": "average" if averaged else e + 1, "tau": t} for e, t in chosen],
                    "kept_epoch": {"accuracy": round(float((kept == data.val_labels).mean()), 5),
                                   "f1_macro": round(macro_f1(data.val_labels, kept, probs.shape[1]), 5)}}


def _optional_callbacks(cfg: FitConfig, has_val: bool) -> list:
    out = []
    grow = ProgressiveResize(cfg.progressive, cfg.average_from) if cfg.progressive else None
    if grow is not None:
        out.append(grow)
    if cfg.max_minutes and cfg.scheduler in ANNEALED:
        out.append(FitScheduleToBudget(cfg.max_minutes * 60, cost=grow.cost if grow else None))
    if cfg.ema:
        # Validation, checkpoints (best.ckpt's state_dict) and the saved model all see the averaged
        # weights; the raw ones travel in the checkpoint too, so --resume continues both.
        out.append(MovingAverage(cfg.ema, cfg.ema_long_tail, LONG_TAIL_RATIO))
    if cfg.patience and has_val:
        out.append(EarlyStopping(monitor="val_f1_macro", mode="max", patience=cfg.patience))
    return out


def _trainer(cfg: FitConfig, out: Path, callbacks: list, show_progress: bool) -> L.Trainer:
    bar = show_progress and not quiet()
    gpu = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    return L.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
        precision="bf16-mixed" if gpu else "32-true",
        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        logger=CSVLogger(out, name="logs"), callbacks=callbacks + ([RichProgressBar(leave=True)] if bar else []),
        num_sanity_val_steps=0, enable_model_summary=False, enable_progress_bar=bar, log_every_n_steps=10,
        deterministic=False)


def _fit(trainer: L.Trainer, module, data, ckpt_dir: Path, resume: bool) -> None:
    last = ckpt_dir / "last.ckpt" if resume else None
    if last is not None:  # RunFolder has checked it is there
        read_checkpoint(last)  # one clear line for a foreign or corrupt file, before Lightning reads it
        info(f"resuming from {last}")
    with warnings.catch_warnings():
        for pattern in _EXPECTED:
            warnings.filterwarnings("ignore", pattern)
        try:
            trainer.fit(module, datamodule=data, ckpt_path=str(last) if last else None, weights_only=True)
        except SystemExit:
            # Lightning exits on Ctrl+C after saving what it can (and ignores SIGINT from then on).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if not trainer.interrupted:
                raise
    if trainer.interrupted:
        raise WardrobeError(f"training interrupted; continue it with --resume (last checkpoint in {ckpt_dir})")


def resolve_aspect(cfg: FitConfig, ds: Dataset) -> float:
    """--aspect as width / height: auto is the usual shape of the training photos (1 when not given)."""
    value = parse_aspect(cfg.aspect)
    if value != "auto":
        return value or 1.0
    aspect = typical_aspect([r.path for r in ds.split("train") or ds.records])
    info(f"--aspect auto: {aspect_name(aspect)}, the training photos' usual shape")
    return aspect


def read_checkpoint(path: Path) -> dict:
    """A Lightning checkpoint read with ``weights_only=True`` (tensors and plain containers only):
    a file carrying code is refused, never run; a foreign or damaged one is one line."""
    ckpt = torch_load_tensors(path, str(path), "checkpoint", "it is not a checkpoint wardrobe wrote")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict) or "epoch" not in ckpt:
        raise WardrobeError(f"{path}: not a wardrobe training checkpoint (no state_dict / epoch)")
    return ckpt


def predict_probs(model: torch.nn.Module, ds, workers: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, pooled embeddings or None for networks without timm's forward_head). In ONNX
    Runtime where the fast path runs: 3.7x eager PyTorch at 272 px, three minutes off a top-10 run
    (bench/post_training_speed.py, docs/benchmarks.md session 34)."""
    both = has_embedding(model)
    net = FinishedNetwork(LogitsAndEmbedding(model) if both else model, 2 if both else 1, env_fast_path())
    probs, embs = [], []
    for x, _ in loader(ds, 64, workers):
        out = net(x)
        probs.append(softmax(out[0]))
        if both:
            embs.append(out[1])
    if not probs:
        return np.zeros((0, 0)), None
    return np.concatenate(probs), (np.concatenate(embs) if both else None)
