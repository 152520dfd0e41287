"""`wardrobe train`, `cv` and `compare`: the training options, mapped onto ``wardrobe.train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from wardrobe.errors import WardrobeError
from wardrobe.ui import results
from wardrobe.cli.common import app, ImageCol, LabelCol, SplitCol, ImagesDir, Extension, LabelRegex, LabelMap, Include, Exclude, Rename, TopK, MinCount, Strict, Runtime, Workers, _data_options, _metrics_table


Fit = "Training (finetune / scratch)"

Aug = "Augmentation (finetune / scratch)"

@app.command()
def train(
    data: Annotated[str, typer.Argument(help="Preset name, folder (one sub-folder per class, or --label-regex) or CSV/TSV manifest.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    preset: Annotated[Optional[str], typer.Option("--preset", help="fast: the probe; best: the strongest recipe for 30 min on 2 CPU cores.")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="probe (frozen backbone + logistic regression on cached embeddings, default), finetune or scratch.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Network ('wardrobe models' lists them); default efficientnet_lite0.")] = None,
    val_ratio: Annotated[float, typer.Option("--val-ratio", help="Validation share when DATA has no split column.")] = 0.15,
    test_ratio: Annotated[float, typer.Option("--test-ratio", help="Test share when DATA has no split column.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Photos per batch (default 32, or the preset's).")] = None,
    workers: Workers = None,
    runtime: Runtime = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute embeddings / decoded photos instead of reusing the caches.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in OUT (it is kept until the new one is complete).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of OUT from its last checkpoint (kept in OUT.partial).", rich_help_panel=Fit)] = False,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Input size in pixels (default: the model's).", rich_help_panel=Fit)] = None,
    train_size: Annotated[Optional[int], typer.Option("--train-size", help="Train on random crops of this size (default: --image-size); smaller is faster and, with random-resized crops, matches object sizes at test (FixRes).", rich_help_panel=Fit)] = None,
    drop_path: Annotated[Optional[float], typer.Option("--drop-path", help="Stochastic depth rate (timm networks).", rich_help_panel=Fit)] = None,
    ema: Annotated[Optional[float], typer.Option("--ema", help="Keep an exponential moving average of the weights with this decay per step (e.g. 0.99); it is validated and saved instead of the raw weights.", rich_help_panel=Fit)] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", rich_help_panel=Fit)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate of the head.", rich_help_panel=Fit)] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help="adamw or sgd.", rich_help_panel=Fit)] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="onecycle, cosine (with warm-up), plateau or none.", rich_help_panel=Fit)] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option("--warmup-epochs", rich_help_panel=Fit)] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", rich_help_panel=Fit)] = None,
    label_smoothing: Annotated[Optional[float], typer.Option("--label-smoothing", rich_help_panel=Fit)] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="ce, weighted_ce (class-weighted) or focal.", rich_help_panel=Fit)] = None,
    focal_gamma: Annotated[Optional[float], typer.Option("--focal-gamma", rich_help_panel=Fit)] = None,
    sampler: Annotated[Optional[str], typer.Option("--sampler", help="none or balanced (each class equally likely).", rich_help_panel=Fit)] = None,
    balance: Annotated[Optional[int], typer.Option("--balance", help="Resample every class to N photos per epoch.", rich_help_panel=Fit)] = None,
    trainable: Annotated[Optional[str], typer.Option("--trainable", help="all, head, or last:N backbone stages.", rich_help_panel=Fit)] = None,
    head_epochs: Annotated[Optional[int], typer.Option("--head-epochs", help="Two-stage: train the head alone for N epochs first.", rich_help_panel=Fit)] = None,
    backbone_lr_mult: Annotated[Optional[float], typer.Option("--backbone-lr-mult", help="Backbone LR = head LR x this.", rich_help_panel=Fit)] = None,
    patience: Annotated[Optional[int], typer.Option("--patience", help="Early stopping: epochs without a better validation macro-F1.", rich_help_panel=Fit)] = None,
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help="Stop after this wall time and keep the best epoch.", rich_help_panel=Fit)] = None,
    devices: Annotated[Optional[str], typer.Option("--devices", help="Devices (or processes on CPU) for Lightning.", rich_help_panel=Fit)] = None,
    strategy: Annotated[Optional[str], typer.Option("--strategy", help="Lightning strategy, e.g. ddp.", rich_help_panel=Fit)] = None,
    accelerator: Annotated[Optional[str], typer.Option("--accelerator", help="auto, cpu or gpu.", rich_help_panel=Fit)] = None,
    augment: Annotated[Optional[str], typer.Option("--augment", help="none, light, standard or strong.", rich_help_panel=Aug)] = None,
    hflip: Annotated[Optional[float], typer.Option("--hflip", help="Horizontal flip probability.", rich_help_panel=Aug)] = None,
    rotation: Annotated[Optional[float], typer.Option("--rotation", help="Max rotation in degrees.", rich_help_panel=Aug)] = None,
    crop_scale: Annotated[Optional[float], typer.Option("--crop-scale", help="Random-resized-crop minimum area (1 = no crop).", rich_help_panel=Aug)] = None,
    color_jitter: Annotated[Optional[float], typer.Option("--color-jitter", rich_help_panel=Aug)] = None,
    randaugment: Annotated[Optional[str], typer.Option("--randaugment", help="N,M: RandAugment with N ops of magnitude M.", rich_help_panel=Aug)] = None,
    erasing: Annotated[Optional[float], typer.Option("--erasing", help="Random erasing probability.", rich_help_panel=Aug)] = None,
    noise: Annotated[Optional[float], typer.Option("--noise", help="Gaussian noise sigma on [0,1] pixels.", rich_help_panel=Aug)] = None,
    image_col: ImageCol = "image", label_col: LabelCol = "label", split_col: SplitCol = None,
    images_dir: ImagesDir = None, extension: Extension = None, label_regex: LabelRegex = None,
    label_map: LabelMap = None, include: Include = None, exclude: Exclude = None, rename: Rename = None,
    top_k_classes: TopK = None, min_count: MinCount = None, strict: Strict = False,
):
    """Train a classifier on labelled photos; writes OUT/model.safetensors, config.json, metrics.json."""
    from wardrobe.training import train as train_api  # heavy: pulls in torch; per command, so --help stays fast

    opts = _data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map,
                         include, exclude, rename, top_k_classes, min_count, strict)
    ra_n, ra_m = _randaugment(randaugment)
    fit_options = dict(image_size=image_size, train_size=train_size, drop_path=drop_path, ema=ema, epochs=epochs, lr=lr, optimizer=optimizer, scheduler=scheduler,
                       warmup_epochs=warmup_epochs, weight_decay=weight_decay, label_smoothing=label_smoothing,
                       loss=loss, focal_gamma=focal_gamma, sampler=sampler, balance=balance, trainable=trainable,
                       head_epochs=head_epochs, backbone_lr_mult=backbone_lr_mult, patience=patience,
                       max_minutes=max_minutes, strategy=strategy, accelerator=accelerator,
                       devices=int(devices) if devices and devices.isdigit() else devices,
                       augment=augment, hflip=hflip, rotation=rotation, crop_scale=crop_scale,
                       color_jitter=color_jitter, randaugment_n=ra_n, randaugment_m=ra_m, erasing=erasing, noise=noise)
    fit_options = {k: v for k, v in fit_options.items() if v is not None}
    if no_cache:
        fit_options["use_pixel_cache"] = False
    result = train_api(data, out, mode=mode, model=model, preset=preset, data_options=opts, val_ratio=val_ratio,
                       test_ratio=test_ratio, seed=seed, batch_size=batch_size, workers=workers, runtime=runtime,
                       use_cache=not no_cache, resume=resume, overwrite=overwrite, **fit_options)
    # empty on the non-zero ranks of a multi-process run; no table when nothing was held out (--val-ratio 0)
    if result.metrics and "per_class" in result.metrics:
        results.print(_metrics_table(result.metrics, f"validation ({result.metrics['counts']['validation']} photos)"))

# cv and compare accept every option of `wardrobe train`: the train command's own parser reads them.
Forwarded = {"allow_extra_args": True, "ignore_unknown_options": True}

def _train_options(data: str, args: list[str]) -> dict:

    cmd = typer.main.get_command(app).commands["train"]
    try:
        ctx = cmd.make_context("train", [data, "--out", "-", *args])
    except click.exceptions.Exit:
        raise typer.Exit() from None
    except click.ClickException as exc:
        raise WardrobeError(f"{exc.format_message()} (options after DATA are those of 'wardrobe train')") from None
    p = dict(ctx.params)
    opts = _data_options(*(p.pop(k) for k in ("image_col", "label_col", "split_col", "images_dir", "extension",
                                                 "label_regex", "label_map", "include", "exclude", "rename",
                                                 "top_k_classes", "min_count", "strict")))
    for k in ("data", "out", "val_ratio", "test_ratio"):
        p.pop(k, None)
    p["randaugment_n"], p["randaugment_m"] = _randaugment(p.pop("randaugment", None))
    devices = p.get("devices")
    if isinstance(devices, str) and devices.isdigit():
        p["devices"] = int(devices)
    no_cache = p.pop("no_cache", False)
    kwargs = {k: v for k, v in p.items() if v is not None and v is not False}
    if no_cache:
        kwargs["use_cache"] = False
        kwargs["use_pixel_cache"] = False
    return {"data_options": opts, **kwargs}

@app.command(context_settings=Forwarded)
def cv(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="Preset, folder or manifest; any split column is ignored.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for fold-K/ runs, cv.json/.csv/.md and report.html.")],
    folds: Annotated[int, typer.Option("--folds", "-k", min=2, help="Number of stratified folds.")] = 5,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write report.html.")] = False,
):
    """k-fold cross-validation: one model per stratified fold, mean ± std of accuracy, F1 and mAP.
    Every other option (after DATA) is a 'wardrobe train' option, e.g. --preset best or --model;
    --resume reuses the folds an interrupted run of the same CV finished and continues the one it was
    training from its last checkpoint."""
    from wardrobe.evaluation.cv import (  # heavy: pulls in torch; per command, so --help stays fast
        cross_validate,
        cv_table,
    )

    kwargs = _train_options(data, ctx.args)
    result = cross_validate(data, out, folds=folds, report=not no_report, **kwargs)
    if result:
        results.print(cv_table(result))

@app.command(context_settings=Forwarded)
def compare(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="Preset, folder or manifest with labels.")],
    models: Annotated[str, typer.Option("--models", help="Comma-separated model names ('wardrobe models').")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for one run per model and leaderboard.md/.csv/.png.")],
    folds: Annotated[Optional[int], typer.Option("--folds", "-k", min=2, help="Compare on the same k folds instead of one split.")] = None,
):
    """Train and evaluate several models on the same split (or folds); a leaderboard of quality,
    parameters, MFLOPs, latency and training time. Other options are 'wardrobe train' options."""
    from wardrobe.evaluation.compare import compare as compare_api, leaderboard_table  # heavy: pulls in torch; per command, so --help stays fast

    kwargs = _train_options(data, ctx.args)
    if "model" in kwargs:
        raise WardrobeError("compare: name the networks with --models a,b,c, not --model")
    result = compare_api(data, models.split(","), out, folds=folds, **kwargs)
    results.print(leaderboard_table(result))


def _randaugment(text: str | None) -> tuple[int | None, int | None]:
    """--randaugment N,M as (N, M); (None, None) when not given."""
    if not text:
        return None, None
    try:
        n, m = (int(v) for v in text.split(","))
    except ValueError:
        raise WardrobeError(f"--randaugment {text}: expected N,M such as 2,9") from None
    return n, m
