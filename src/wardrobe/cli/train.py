"""`wardrobe train`, `cv` and `compare`: the training options, mapped onto ``wardrobe.train``."""

from __future__ import annotations

import functools
import inspect
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from wardrobe.cli import common as opt
from wardrobe.cli.common import app
from wardrobe.errors import WardrobeError
from wardrobe.training.config import FitConfig
from wardrobe.training.knobs import Augment
from wardrobe.ui import results

Fit = "Training (finetune / scratch)"
Aug = "Augmentation (finetune / scratch)"

def _train(
    data: Annotated[str, typer.Argument(help="Preset name, folder (one sub-folder per class, or --label-regex) or CSV/TSV manifest.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    preset: Annotated[Optional[str], typer.Option("--preset", help="fast: the probe; best: the strongest recipe for 30 min on 2 CPU cores.")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="probe (frozen backbone + logistic regression on cached embeddings, default), finetune or scratch.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Network ('wardrobe models' lists them); default efficientnet_lite1 for the probe, efficientnet_lite0 for finetune.")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Pretrained weights for --model from a file (.safetensors, .pth/.pt/.bin) or a hub-style folder; never unpickles objects.")] = None,
    levels: Annotated[Optional[int], typer.Option("--levels", min=0, max=16, help="The head also sees the pooled outputs of the last N block stages (default 3 on EfficientNets for the probe and --preset best, else 0; 0: the final embedding only).")] = None,
    val_ratio: Annotated[float, typer.Option("--val-ratio", help="Validation share when DATA has no split column.")] = 0.15,
    test_ratio: Annotated[float, typer.Option("--test-ratio", help="Test share when DATA has no split column.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Photos per batch (default 32, or the preset's).")] = None,
    workers: opt.Workers = None,
    runtime: opt.Runtime = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute embeddings / decoded photos instead of reusing the caches.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in OUT (it is kept until the new one is complete).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of OUT from its last checkpoint (kept in OUT.partial).", rich_help_panel=Fit)] = False,
    augment: Annotated[Optional[str], typer.Option("--augment", help="none, light, standard or strong.", rich_help_panel=Aug)] = None,
    randaugment: Annotated[Optional[str], typer.Option("--randaugment", help="N,M: RandAugment with N ops of magnitude M.", rich_help_panel=Aug)] = None,
    image_col: opt.ImageCol = "image", label_col: opt.LabelCol = "label", split_col: opt.SplitCol = None,
    images_dir: opt.ImagesDir = None, extension: opt.Extension = None, label_regex: opt.LabelRegex = None,
    label_map: opt.LabelMap = None, include: opt.Include = None, exclude: opt.Exclude = None, rename: opt.Rename = None,
    top_k_classes: opt.TopK = None, min_count: opt.MinCount = None, strict: opt.Strict = False,
    corrections: Annotated[Optional[Path], typer.Option("--corrections", help="A review's corrections.csv: human labels override, reviewed photos join training, unknown ones are dropped.", rich_help_panel="Data")] = None,
    keep_unknown: Annotated[bool, typer.Option("--keep-unknown", help="With --corrections: train photos reviewed as unknown as a class of their own (a reject class).", rich_help_panel="Data")] = False,
    **flags,
):
    """Train a classifier on labelled photos; writes OUT/model.safetensors, config.json, metrics.json."""
    from wardrobe.training import train as train_api  # heavy: torch; imported per command
    from wardrobe.training.options import TrainOptions  # heavy: torch; imported per command

    opts = opt.data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map,
                         include, exclude, rename, top_k_classes, min_count, strict)
    if keep_unknown and not corrections:
        raise WardrobeError("--keep-unknown applies to --corrections")
    opts.corrections, opts.keep_unknown = (str(corrections) if corrections else None), keep_unknown
    ra_n, ra_m = _randaugment(randaugment)
    devices = flags.pop("devices", None)
    fit_options = {**flags, "augment": augment, "randaugment_n": ra_n, "randaugment_m": ra_m,
                   "devices": int(devices) if devices and devices.isdigit() else devices}
    fit_options = {k: v for k, v in fit_options.items() if v is not None}
    if no_cache:
        fit_options["use_pixel_cache"] = False
    options = TrainOptions.build(mode=mode, model=model, weights=str(weights) if weights else None, preset=preset, data_options=opts, val_ratio=val_ratio,
                                 test_ratio=test_ratio, seed=seed, batch_size=batch_size, workers=workers,
                                 runtime=runtime, use_cache=not no_cache, levels=levels, **fit_options)
    result = train_api(data, out, options, resume=resume, overwrite=overwrite)
    # empty on the non-zero ranks of a multi-process run; no table when nothing was held out (--val-ratio 0)
    if result.metrics and "per_class" in result.metrics:
        results.print(opt.metrics_table(result.metrics, f"validation ({result.metrics['counts']['validation']} photos)"))



def _flags() -> list[inspect.Parameter]:
    """A --flag per FitConfig and Augment field that declares one (``flag`` metadata): the options
    are declared once, with the dataclasses."""
    out = []
    for f in (*fields(FitConfig), *fields(Augment)):
        if "help" not in f.metadata:
            continue
        kind = {"int": int, "float": float, "bool": bool}.get(str(f.type).split(" | ")[0], str)
        if f.name == "devices":
            kind = str  # a count or a list such as 0,1
        name = f.name.replace('_', '-')
        decls = [f"--{name}/--no-{name}"] if kind is bool else [f"--{name}"]
        option = typer.Option(*decls, help=f.metadata["help"], rich_help_panel=f.metadata["panel"])
        out.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                     annotation=Annotated[Optional[kind], option]))
    return out


def _command(fn, extra: list[inspect.Parameter]):
    """``fn`` with ``extra`` keyword parameters in place of its ``**flags``, as Typer reads a signature."""
    sig = inspect.signature(fn, eval_str=True)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]

    @functools.wraps(fn)
    def command(**kwargs):
        return fn(**kwargs)

    command.__signature__ = sig.replace(parameters=[*params, *extra])
    command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
    return command


train = app.command("train")(_command(_train, _flags()))


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
    opts = opt.data_options(*(p.pop(k) for k in ("image_col", "label_col", "split_col", "images_dir", "extension",
                                                 "label_regex", "label_map", "include", "exclude", "rename",
                                                 "top_k_classes", "min_count", "strict")))
    corrections, opts.keep_unknown = p.pop("corrections", None), p.pop("keep_unknown", False)
    opts.corrections = str(corrections) if corrections else None
    for k in ("data", "out", "val_ratio", "test_ratio"):
        p.pop(k, None)
    p["randaugment_n"], p["randaugment_m"] = _randaugment(p.pop("randaugment", None))
    if p.get("weights") is not None:
        p["weights"] = str(p["weights"])
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
    from wardrobe.evaluation.cv import cross_validate, cv_table  # heavy: torch; imported per command

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
    from wardrobe.evaluation.compare import (  # heavy: torch; imported per command
        compare as compare_api,
        leaderboard_table,
    )

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
