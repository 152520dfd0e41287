"""``wardrobe.train``: from DATA to a run folder with a model file, its config and its metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wardrobe.data import DataOptions, Dataset, assign_splits, load_dataset
from wardrobe.data.fingerprints import leakage_message, split_leakage
from wardrobe.errors import WardrobeError
from wardrobe.files import is_secondary_process
from wardrobe.metrics import fit_temperature, nll, softmax, summary
from wardrobe.models.modelfile import MODEL_FILENAME, save_model
from wardrobe.selection import fitted_selection
from wardrobe.training.config import TRAIN_PRESETS, FitConfig, fit_config
from wardrobe.training.knobs import resolve_augment
from wardrobe.training.options import TrainOptions
from wardrobe.training.probe import DEFAULT_CS, DEFAULT_HEAD, PROBE_BACKBONE, train_probe
from wardrobe.training.runfolder import RunFolder, check_out
from wardrobe.ui import info, warn
from wardrobe.unknown import fit_unknown, make_bank

MODES = ("probe", "finetune", "scratch")
PROBE_BATCH = 32  # photos per embedding batch


@dataclass
class TrainResult:
    out: Path
    model_path: Path
    metrics: dict
    config: dict


def train(data: str | Path, out: str | Path, options: TrainOptions | None = None, *, resume: bool = False,
          overwrite: bool = False, show_progress: bool = True, fit: FitConfig | None = None, extra_callbacks=(),
          splits: Mapping[str, str] | None = None, warn_leakage: bool = True, **kwargs) -> TrainResult:
    """Train a classifier on DATA and write OUT/{model.safetensors, config.json, metrics.json}.

    ``options`` (TrainOptions), and any of its fields as keyword options laid over it: ``mode``
    probe (frozen backbone + logistic regression, the default), finetune or scratch; ``preset`` fast
    (the probe) or best (the strongest recipe for 30 minutes on 2 CPU cores); data options (see
    DataOptions); split, probe, fine-tuning (see FitConfig) and augmentation options.
    ``splits``: {photo path: "train" | "validation"} overriding any split column or ratio (how
    cross-validation hands each fold its photos); photos it does not name are left out.
    In probe mode ``noise=SIGMA`` hardens the model: the logistic regression also sees embeddings
    of a copy of each training photo with Gaussian pixel noise of that sigma.
    ``overwrite``: replace OUT when it already holds a run (otherwise refused). The run is written
    beside OUT (OUT.partial) and renamed onto it at the end; ``resume`` continues an interrupted one.
    """
    t0 = time.perf_counter()
    opts = TrainOptions.build(options, **kwargs)
    mode, fit, fit_overrides, probe_noise = _resolve(opts, fit)
    out = Path(out)
    if mode == "probe" and resume:
        raise WardrobeError("--resume continues a fine-tuning or scratch run; a probe run has nothing to resume")
    if not is_secondary_process():  # fail before minutes of data loading, not after
        check_out(out, overwrite, resume)
    sp = opts.split
    val_ratio, test_ratio, seed = _given(sp.val_ratio, 0.15), _given(sp.test_ratio, 0.0), _given(sp.seed, 0)
    cfg = None if mode == "probe" else _fit_config(opts, mode, fit, fit_overrides, seed)  # bad options: no wait
    ds = _load(data, opts.data, splits, val_ratio, test_ratio, seed, mode)
    leakage = split_leakage(ds.records, opts.workers, show_progress)
    if warn_leakage and (message := leakage_message(leakage)):  # cv says it once for all its folds
        warn(message)
    runtime = opts.runtime or "auto"
    config = {"mode": mode, "data": str(data), "data_options": opts.data.to_dict(), "dataset": ds.description,
              "val_ratio": val_ratio, "test_ratio": test_ratio, "seed": seed, "runtime": runtime,
              "options": opts.to_dict()}
    with RunFolder(out, overwrite, resume) as work:
        if mode == "probe":
            # the pixel cache is fine-tuning's; --no-cache asks the probe for fresh embeddings instead
            if given := sorted(set(fit_overrides) - {"use_pixel_cache"}):
                raise WardrobeError(f"options {', '.join(given)} apply to --mode finetune or scratch, not probe")
            config["batch_size"] = opts.batch_size or PROBE_BATCH
            pr = opts.probe
            run = train_probe(ds, opts.model or PROBE_BACKBONE, config["batch_size"], opts.workers, runtime,
                              pr.cs or DEFAULT_CS, pr.head or DEFAULT_HEAD, _given(pr.use_cache, True),
                              show_progress, probe_noise, seed, weights=opts.weights, levels=pr.levels)
        else:
            config["batch_size"] = cfg.batch_size
            from wardrobe.training.finetune import fit_network  # heavy: Lightning, which a probe run never needs

            run = fit_network(ds, work, cfg, resume=resume, show_progress=show_progress,
                              extra_callbacks=extra_callbacks)
        if run is None:  # a non-zero rank of a multi-process run: rank 0 writes the run folder
            return TrainResult(out, out / MODEL_FILENAME, {}, {})
        config, metrics = write_run(work, ds, run, config, leakage, time.perf_counter() - t0)
    info(f"wrote {out / MODEL_FILENAME} ({metrics['timings']['total_seconds']:.1f} s)")
    return TrainResult(out, out / MODEL_FILENAME, metrics, config)


def _fit_config(opts: TrainOptions, mode: str, fit: FitConfig | None, overrides: dict, seed: int) -> FitConfig:
    if opts.probe.levels and mode == "scratch":
        raise WardrobeError("--levels taps a pretrained network's stages: use it with the probe or --mode finetune")
    return fit_config(fit, mode=mode, model=opts.model, weights=opts.weights, batch_size=opts.batch_size,
                      workers=opts.workers, seed=seed, levels=opts.probe.levels,
                      **overrides)  # None: the preset's (or FitConfig's) value


def _given(value, default):
    return default if value is None else value


def _resolve(opts: TrainOptions, fit: FitConfig | None):
    """(mode, fit preset, fit overrides, probe noise) from the options."""
    preset = opts.preset
    if preset is not None and preset not in TRAIN_PRESETS:
        raise WardrobeError(f"--preset {preset}: use one of {', '.join(TRAIN_PRESETS)}")
    mode = opts.mode
    if preset == "best":
        fit, mode = TRAIN_PRESETS["best"], mode or "finetune"
    mode = mode or "probe"
    if mode not in MODES:
        raise WardrobeError(f"--mode {mode}: not available (modes: {', '.join(MODES)})")
    overrides, knobs, probe_noise = opts.fit_overrides(), opts.knobs(), 0.0
    # Augmentation: a preset name and/or single knobs laid over the preset (or the recipe's own).
    if opts.augment is not None:
        overrides["augment"] = resolve_augment(opts.augment, **knobs)
    elif set(knobs) == {"noise"} and mode == "probe":
        probe_noise = float(knobs["noise"])
    elif knobs:
        overrides["augment"] = replace((fit or FitConfig()).augment, **knobs)
    return mode, fit, overrides, probe_noise


def _load(data, opts: DataOptions, splits, val_ratio, test_ratio, seed, mode) -> Dataset:
    ds = load_dataset(data, opts)
    if splits is not None:
        ds = Dataset([replace(r, split=splits[str(r.path)]) for r in ds.records if str(r.path) in splits],
                     ds.name, ds.skipped, dict(ds.description, split="explicit"))
        if not ds.records:
            raise WardrobeError(f"{ds.name}: none of its photos is in the given splits")
    own_splits = ds.has_splits
    ds = assign_splits(ds, val_ratio=val_ratio, test_ratio=test_ratio, seed=seed)
    if len(ds.classes) < 2:
        raise WardrobeError(f"{ds.name}: needs at least 2 classes to train, found {len(ds.classes)} "
                            f"({', '.join(ds.classes)})")
    n_train, n_val = len(ds.split("train")), len(ds.split("validation"))
    if not n_val and (mode == "probe" or val_ratio or own_splits):
        hint = " (--val-ratio 0 trains on every photo in --mode finetune or scratch)" if mode == "probe" else ""
        raise WardrobeError(f"{ds.name}: the validation split is empty{hint}")
    info(f"{ds.name}: {len(ds.records)} photos, {len(ds.classes)} classes "
         f"(train {n_train}, validation {n_val}, test {len(ds.split('test'))})")
    if len(ds.skipped):
        warn(ds.skipped.summary())
    return ds


def write_run(work: Path, ds: Dataset, run, config: dict, leakage: dict, seconds: float) -> tuple[dict, dict]:
    """The one writer of a run folder, whatever the mode: the model file, config.json and
    metrics.json with the same layout and keys. Returns (config, metrics)."""
    config = {**config, "model": run.backbone.name, "weights": run.backbone.weights,
              "preprocess": run.preprocess.to_dict(), **run.config}
    metrics = {"split": "validation" if run.metrics else None, **run.metrics, "counts": run.counts,
               "epochs": run.epochs, "best_epoch": run.best_epoch,
               "model_epochs": run.model_epochs, "overfitting_warning": run.overfitting,
               "timings": {"total_seconds": round(seconds, 2), **run.timings},
               "skipped": ds.skipped.to_dict(),
               "duplicates_across_splits": {k: v for k, v in leakage.items()
                                            if k.endswith("pairs") or k.startswith("eval")}}
    meta = {"arch": run.backbone.arch, "head": run.head, "backbone": run.backbone.name,
            "weights": run.backbone.weights, "mode": config["mode"], "classes": ds.classes,
            "preprocess": run.preprocess.to_dict(), "temperature": 1.0,
            "metrics": {"validation": summary(run.metrics)} if run.metrics else {}, "train_config": config}
    if levels := getattr(run.model, "wardrobe_levels", 0):
        meta["levels"] = levels  # the head sees the last stages' pooled outputs too (models/levels.py)
    if run.validation is not None and len(run.validation[1]):
        # Calibrated on the validation photos: a temperature (the fine-tuned recipes come out
        # underconfident: ECE 0.25 before), then the trusted-label thresholds at that temperature.
        logp, y = np.log(np.clip(run.validation[0], 1e-12, None)), run.validation[1]
        t = fit_temperature(logp, y)
        meta["temperature"] = t
        metrics["calibration"] = {"temperature": t, "fitted_on": "validation", "nll_before": nll(logp, y),
                                  "nll_after": nll(logp, y, t)}
        meta["selection"] = fitted_selection(softmax(logp, t), y, ds.classes, t)
    extras = {}
    if run.embeddings is not None and len(run.embeddings[0]) and len(run.embeddings[1]):
        bank = make_bank(run.embeddings[0], seed=0)
        meta["unknown"] = fit_unknown(bank, run.embeddings[1])
        extras["unknown_bank"] = bank
    save_model(work / MODEL_FILENAME, run.model, meta, extras)
    (work / "config.json").write_text(json.dumps(config, indent=2, default=str))
    (work / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return config, metrics
