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
from wardrobe.metrics import compute_metrics, summary
from wardrobe.models.modelfile import MODEL_FILENAME, save_model
from wardrobe.models.registry import DEFAULT_BACKBONE, create_backbone
from wardrobe.training.augment import Augment, resolve_augment
from wardrobe.training.config import TRAIN_PRESETS, FitConfig, fit_config
from wardrobe.training.embeddings import extract_embeddings
from wardrobe.training.finetune import fit_network
from wardrobe.training.probe import DEFAULT_CS, DEFAULT_HEAD, attach_head, fit_linear_probe, head_features
from wardrobe.training.runfolder import RunFolder, check_out
from wardrobe.ui import info, warn

MODES = ("probe", "finetune", "scratch")


@dataclass
class TrainResult:
    out: Path
    model_path: Path
    metrics: dict
    config: dict


def train(data: str | Path, out: str | Path, mode: str | None = None, model: str | None = None,
          preset: str | None = None, data_options: DataOptions | None = None, val_ratio: float = 0.15,
          test_ratio: float = 0.0, seed: int = 0, batch_size: int = 32, workers: int | None = None,
          runtime: str = "auto", cs: tuple[float, ...] = DEFAULT_CS, head: str = DEFAULT_HEAD,
          use_cache: bool = True, show_progress: bool = True, resume: bool = False,
          fit: FitConfig | None = None, extra_callbacks=(), splits: Mapping[str, str] | None = None,
          warn_leakage: bool = True, overwrite: bool = False,
          **options) -> TrainResult:
    """Train a classifier on DATA and write OUT/{model.safetensors, config.json, metrics.json}.

    ``mode``: probe (frozen backbone + logistic regression, the default), finetune or scratch.
    ``preset``: fast (the probe) or best (the strongest recipe for 30 minutes on 2 CPU cores).
    Other keyword options are data options (see DataOptions) or training options (see FitConfig).
    ``splits``: {photo path: "train" | "validation"} overriding any split column or ratio (how
    cross-validation hands each fold its photos); photos it does not name are left out.
    ``overwrite``: replace OUT when it already holds a run (otherwise refused). The run is written
    beside OUT (OUT.partial) and renamed onto it at the end; ``resume`` continues an interrupted one.
    In probe mode ``noise=SIGMA`` hardens the model: the logistic regression also sees embeddings
    of a copy of each training photo with Gaussian pixel noise of that sigma.
    """
    t0 = time.perf_counter()
    data_names = set(DataOptions.__dataclass_fields__)
    fit_names = set(FitConfig.__dataclass_fields__)
    aug_names = set(Augment.__dataclass_fields__)
    # Augmentation: a preset name and/or single knobs laid over the preset (or the recipe's own).
    aug_knobs = {k: v for k in aug_names if (v := options.pop(k, None)) is not None}
    aug = options.pop("augment", None)
    probe_noise = 0.0
    if isinstance(aug, str):
        options["augment"] = resolve_augment(aug, **aug_knobs)
    elif set(aug_knobs) == {"noise"} and (mode or ("finetune" if preset == "best" else "probe")) == "probe":
        probe_noise = float(aug_knobs["noise"])
    elif aug_knobs:
        base = aug or (TRAIN_PRESETS["best"].augment if preset == "best" else FitConfig().augment)
        options["augment"] = replace(base, **aug_knobs)
    elif aug is not None:
        options["augment"] = aug
    unknown = set(options) - data_names - fit_names
    if unknown:
        raise TypeError(f"unknown option(s): {sorted(unknown)}")
    data_overrides = {k: v for k, v in options.items() if k in data_names}
    fit_overrides = {k: v for k, v in options.items() if k in fit_names and k not in data_names}
    if preset is not None:
        if preset not in TRAIN_PRESETS:
            raise WardrobeError(f"--preset {preset}: use one of {', '.join(TRAIN_PRESETS)}")
        if preset == "best":
            fit = TRAIN_PRESETS["best"]
            mode = mode or "finetune"
        mode = mode or "probe"
    mode = mode or "probe"
    if mode not in MODES:
        raise WardrobeError(f"--mode {mode}: not available (modes: {', '.join(MODES)})")
    out = Path(out)
    if mode == "probe" and resume:
        raise WardrobeError("--resume continues a fine-tuning or scratch run; a probe run has nothing to resume")
    if not is_secondary_process():  # fail before minutes of data loading, not after
        check_out(out, overwrite, resume)
    opts = data_options or DataOptions()
    ds = load_dataset(data, opts, **data_overrides)
    if splits is not None:
        ds = Dataset([replace(r, split=splits[str(r.path)]) for r in ds.records if str(r.path) in splits],
                     ds.name, ds.skipped, dict(ds.description, split="explicit"))
        if not ds.records:
            raise WardrobeError(f"{ds.name}: none of its photos is in the given splits")
    own_splits = ds.has_splits
    ds = assign_splits(ds, val_ratio=val_ratio, test_ratio=test_ratio, seed=seed)
    classes = ds.classes
    if len(classes) < 2:
        raise WardrobeError(f"{ds.name}: needs at least 2 classes to train, found {len(classes)} ({', '.join(classes)})")
    train_recs, val_recs = ds.split("train"), ds.split("validation")
    if not val_recs and (mode == "probe" or val_ratio or own_splits):
        hint = " (--val-ratio 0 trains on every photo in --mode finetune or scratch)" if mode == "probe" else ""
        raise WardrobeError(f"{ds.name}: the validation split is empty{hint}")
    info(f"{ds.name}: {len(ds.records)} photos, {len(classes)} classes "
         f"(train {len(train_recs)}, validation {len(val_recs)}, test {len(ds.split('test'))})")
    if len(ds.skipped):
        warn(ds.skipped.summary())
    leakage = split_leakage(ds.records, workers, show_progress)
    # cv checks every fold itself and says it once, instead of once per fold.
    if warn_leakage and (message := leakage_message(leakage)):
        warn(message)

    if mode != "probe":
        cfg = fit_config(fit, mode=mode, model=model, batch_size=batch_size if batch_size != 32 else None,
                         workers=workers, seed=seed, **fit_overrides)
        with RunFolder(out, overwrite, resume) as work:
            metrics = fit_network(ds, work, cfg, resume=resume, show_progress=show_progress,
                                  extra_callbacks=extra_callbacks)
        if not metrics:  # a non-zero rank of a multi-process run: rank 0 writes OUT
            return TrainResult(out, out / MODEL_FILENAME, metrics, {})
        info(f"wrote {out / MODEL_FILENAME}")
        return TrainResult(out, out / MODEL_FILENAME, metrics, json.loads((out / "config.json").read_text()))
    if fit_overrides:
        raise WardrobeError(f"options {', '.join(sorted(fit_overrides))} apply to --mode finetune or scratch, not probe")
    model = model or DEFAULT_BACKBONE
    backbone = create_backbone(model, pretrained=True)
    recs = train_recs + val_recs
    feats, errors, stats = extract_embeddings([r.path for r in recs], backbone, batch_size, workers, runtime,
                                              use_cache=use_cache, show_progress=show_progress)
    for i, reason in sorted(errors.items()):
        ds.skipped.add(recs[i].path, reason)  # raises under --strict
    if errors:
        warn(f"{len(errors)} photos could not be used: " + ds.skipped.summary())
    index = {c: i for i, c in enumerate(classes)}
    ok = np.array([i not in errors for i in range(len(recs))])
    y = np.array([index[r.label] for r in recs])
    n_tr = len(train_recs)
    tr, va = ok.copy(), ok.copy()
    tr[n_tr:] = False
    va[:n_tr] = False
    empty = [c for c in classes if not (y[tr] == index[c]).any()]
    if empty:
        raise WardrobeError(f"{ds.name}: class {', '.join(map(repr, empty))} has no usable training photo")

    hf = head_features(feats, head)
    x_fit, y_fit = hf[tr], y[tr]
    if probe_noise:
        train_paths = [r.path for r, good in zip(train_recs, ok[:n_tr]) if good]
        noisy, noisy_errors, noisy_stats = extract_embeddings(
            train_paths, backbone, batch_size, workers, runtime, use_cache=use_cache,
            show_progress=show_progress, noise=probe_noise, noise_seed=seed)
        keep = np.array([i not in noisy_errors for i in range(len(train_paths))], dtype=bool)
        x_fit = np.concatenate([x_fit, head_features(noisy, head)[keep]])
        y_fit = np.concatenate([y_fit, y[tr][keep]])
        stats = {**stats, "noisy": noisy_stats}
    t_fit = time.perf_counter()
    w, b, search = fit_linear_probe(x_fit, y_fit, hf[va], y[va], len(classes), cs=cs, seed=seed)
    fit_seconds = time.perf_counter() - t_fit
    val_probs = _softmax(hf[va] @ w.T + b)
    metrics = compute_metrics(y[va], val_probs, classes)
    info(f"validation accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['f1_macro']:.4f} "
         f"(C={search['C']}, {n_tr - int((~ok[:n_tr]).sum())} training photos)")

    net = attach_head(backbone.model, w, b, head)
    config = {
        "mode": mode, "model": backbone.name, "data": str(data), "data_options": opts.to_dict(),
        "dataset": ds.description, "val_ratio": val_ratio, "test_ratio": test_ratio, "seed": seed,
        "batch_size": batch_size, "runtime": runtime, "preprocess": backbone.preprocess.to_dict(),
        "head": {"type": head, "fit": "logistic_regression", "C_grid": list(cs), **search},
        "noise": probe_noise,
    }
    timings = {"total_seconds": round(time.perf_counter() - t0, 2), "fit_seconds": round(fit_seconds, 2),
               "embeddings": stats}
    result_metrics = {"split": "validation", **metrics, "timings": timings,
                      "counts": {"train": int(tr.sum()), "validation": int(va.sum())},
                      "skipped": ds.skipped.to_dict(),
                      "duplicates_across_splits": {k: v for k, v in leakage.items() if k.endswith("pairs") or k.startswith("eval")}}
    meta = {"arch": backbone.arch, "head": head, "backbone": backbone.name, "weights": backbone.weights, "mode": mode,
            "classes": classes, "preprocess": backbone.preprocess.to_dict(), "temperature": 1.0,
            "metrics": {"validation": summary(metrics)}, "train_config": config}
    with RunFolder(out, overwrite) as work:
        save_model(work / MODEL_FILENAME, net, meta)
        (work / "config.json").write_text(json.dumps(config, indent=2, default=str))
        result_metrics["timings"]["total_seconds"] = round(time.perf_counter() - t0, 2)
        (work / "metrics.json").write_text(json.dumps(result_metrics, indent=2))
    model_path = out / MODEL_FILENAME
    info(f"wrote {model_path} ({result_metrics['timings']['total_seconds']:.1f} s)")
    return TrainResult(out, model_path, result_metrics, config)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
