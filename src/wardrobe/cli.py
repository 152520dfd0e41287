"""The ``wardrobe`` command: a thin layer of options over the Python API."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.table import Table

from wardrobe.errors import WardrobeError
from wardrobe.ui import console, results

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and use clothing-photo classifiers.")
datasets_app = typer.Typer(help="Benchmark dataset presets.", invoke_without_command=True)
app.add_typer(datasets_app, name="datasets")

# Options shared by every command that reads labelled data.
ImageCol = Annotated[str, typer.Option("--image-col", help="Manifest column with image paths or ids.", rich_help_panel="Data")]
LabelCol = Annotated[str, typer.Option("--label-col", help="Manifest column with labels.", rich_help_panel="Data")]
SplitCol = Annotated[Optional[str], typer.Option("--split-col", help="Manifest column with train/validation/test (default: 'split' if present).", rich_help_panel="Data")]
ImagesDir = Annotated[Optional[Path], typer.Option("--images-dir", help="Folder the manifest's image paths are relative to (default: the manifest's folder).", rich_help_panel="Data")]
Extension = Annotated[Optional[str], typer.Option("--extension", help="Append this to manifest image ids (e.g. .jpg).", rich_help_panel="Data")]
LabelRegex = Annotated[Optional[str], typer.Option("--label-regex", help="Take labels from file names: a regex with a (?P<label>...) group.", rich_help_panel="Data")]
LabelMap = Annotated[Optional[str], typer.Option("--label-map", help="Map label codes to names: 'a=x,b=y', or a .json/.csv file.", rich_help_panel="Data")]
Include = Annotated[Optional[list[str]], typer.Option("--include", help="Keep only this class (repeatable).", rich_help_panel="Data")]
Exclude = Annotated[Optional[list[str]], typer.Option("--exclude", help="Drop this class (repeatable).", rich_help_panel="Data")]
Rename = Annotated[Optional[str], typer.Option("--rename", help="Rename/merge classes: 'old=new,...' or a .json/.csv file.", rich_help_panel="Data")]
TopK = Annotated[Optional[int], typer.Option("--top-k-classes", help="Keep the K most frequent classes.", rich_help_panel="Data")]
MinCount = Annotated[Optional[int], typer.Option("--min-count", help="Drop classes with fewer photos.", rich_help_panel="Data")]
Strict = Annotated[bool, typer.Option("--strict", help="Fail on the first missing, unreadable or unlabelled photo instead of skipping it.", rich_help_panel="Data")]
Runtime = Annotated[str, typer.Option("--runtime", help="auto (ONNX Runtime on CPU when installed), onnx or torch.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Photos per batch.")]
Workers = Annotated[Optional[int], typer.Option("--workers", min=0, help="Decoding processes (default: CPU count, at most 4).")]
Tta = Annotated[bool, typer.Option("--tta", help="Test-time augmentation: average each photo with its mirror image.")]


def _data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map, include,
                  exclude, rename, top_k_classes, min_count, strict):
    from wardrobe.data import (
        DataOptions,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )

    return DataOptions(image_col=image_col, label_col=label_col, split_col=split_col,
                       images_dir=str(images_dir) if images_dir else None, extension=extension,
                       label_regex=label_regex, label_map=label_map, include=include or [], exclude=exclude or [],
                       rename=rename, top_k=top_k_classes, min_count=min_count, strict=strict)


def _metrics_table(metrics: dict, title: str) -> Table:
    t = Table(title=title)
    for col in ("class", "precision", "recall", "F1", "AP", "support"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for name, m in metrics["per_class"].items():
        if m["support"] == 0 and not m["precision"]:
            continue
        t.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}",
                  "-" if m["ap"] is None else f"{m['ap']:.3f}", str(m["support"]))
    t.add_section()
    t.add_row("accuracy", "", "", f"{metrics['accuracy']:.4f}", "", str(metrics["n_images"]))
    t.add_row("macro avg", "", "", f"{metrics['f1_macro']:.4f}", f"{metrics['map_macro']:.4f}", "")
    t.add_row("weighted avg", "", "", f"{metrics['f1_weighted']:.4f}", "", "")
    t.add_row("top-3 accuracy", "", "", f"{metrics['top3_accuracy']:.4f}", "", "")
    return t


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
    batch_size: BatchSize = 32,
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
    from wardrobe.training import (
        train as train_api,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )

    opts = _data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map,
                         include, exclude, rename, top_k_classes, min_count, strict)
    ra_n = ra_m = None
    if randaugment:
        try:
            ra_n, ra_m = (int(v) for v in randaugment.split(","))
        except ValueError:
            raise WardrobeError(f"--randaugment {randaugment}: expected N,M such as 2,9") from None
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


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="Run folder or model file.")],
    data: Annotated[str, typer.Argument(help="Preset, folder or manifest with labels.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for metrics.json and the confusion matrix.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="train, validation, test or all (default: test, else validation, else all).")] = None,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    runtime: Runtime = "auto",
    tta: Tta = False,
    robustness: Annotated[bool, typer.Option("--robustness", help="Also measure the photos under noise, blur, JPEG q20 and brightness changes.")] = False,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Fit a temperature on DATA's validation split and store it in the model file.")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write report.html in --out.")] = False,
    image_col: ImageCol = "image", label_col: LabelCol = "label", split_col: SplitCol = None,
    images_dir: ImagesDir = None, extension: Extension = None, label_regex: LabelRegex = None,
    label_map: LabelMap = None, include: Include = None, exclude: Exclude = None, rename: Rename = None,
    top_k_classes: TopK = None, min_count: MinCount = None, strict: Strict = False,
):
    """Measure a model on labelled photos: accuracy, F1, mAP, per-class metrics, confusion matrix,
    calibration (ECE); with --out also a reliability diagram and report.html."""
    from wardrobe.evaluation import (
        evaluate as evaluate_api,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )

    opts = _data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map,
                         include, exclude, rename, top_k_classes, min_count, strict)
    result = evaluate_api(model, data, out, split=split, data_options=opts, batch_size=batch_size,
                          workers=workers, runtime=runtime, tta=tta, robustness=robustness, calibrate=calibrate,
                          report=not no_report)
    results.print(_metrics_table(result, f"{data} ({result['split']}, {result['n_images']} photos)"))
    from wardrobe.evaluation.tables import (  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
        calibration_line,
        robustness_table,
    )

    results.print(calibration_line(result))
    if "robustness" in result:
        results.print(robustness_table(result["robustness"]))


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Run folder or model file.")],
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels per photo.")] = 3,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="csv, jsonl or json (default: from --output's suffix, else csv).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of standard output.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Keep the rows already in --output and label only the photos missing from it.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output file.")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Label at most N photos not yet done (continue later with --resume).")] = None,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    runtime: Runtime = "auto",
    tta: Tta = False,
    devices: Annotated[Optional[str], typer.Option("--devices", help="Devices (or CPU processes) for Lightning's predict loop; each rank writes a shard, merged at the end.")] = None,
    strategy: Annotated[Optional[str], typer.Option("--strategy", help="Lightning strategy for --devices, e.g. ddp.")] = None,
    accelerator: Annotated[Optional[str], typer.Option("--accelerator", help="auto, cpu or gpu (with --devices).")] = None,
):
    """Label photos with a trained model (run folder, model file or exported .onnx); rows are written
    batch by batch, one per photo, with an error column for unreadable ones."""
    from wardrobe.inference.batch import (
        label_photos,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )

    summary = label_photos(model, paths, output, fmt=fmt, top_k=top_k, batch_size=batch_size, workers=workers,
                           resume=resume, runtime=runtime, tta=tta, limit=limit, devices=devices,
                           strategy=strategy, accelerator=accelerator, overwrite=overwrite)
    if summary.rank != 0:
        return
    if output:
        done = f"; {summary.skipped} were already there" if resume else ""
        console.print(f"wrote {summary.written} rows to {output} ({summary.rate:.1f} photos/s){done}")
    if summary.failed:
        console.print(f"[yellow]{summary.failed} of {summary.written} photos could not be read "
                      "(see the error column)[/yellow]")


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Run folder or model file.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx.")] = "onnx",
    int8: Annotated[bool, typer.Option("--int8", help="int8 convolution weights (default scheme: weights).")] = False,
    int8_scheme: Annotated[Optional[str], typer.Option("--int8-scheme", help="weights (int8 storage, float arithmetic: top-1 as fp32), dynamic (ONNX Runtime int8 arithmetic) or static (with --calibrate).")] = None,
    calibrate: Annotated[Optional[str], typer.Option("--calibrate", help="With --int8: static quantisation calibrated on these photos (folder, glob, preset or manifest: its training split).")] = None,
    calibrate_photos: Annotated[int, typer.Option("--calibrate-photos", min=1, help="How many calibration photos to use.")] = 128,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (default: model.onnx or model.int8.onnx beside the model).")] = None,
):
    """Export a model to ONNX, with class names and preprocessing in its metadata."""
    from wardrobe.inference.export import (  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
        calibration_photos,
        export_model,
    )

    if calibrate and not int8:
        raise WardrobeError("--calibrate goes with --int8")
    photos = calibration_photos(calibrate, calibrate_photos) if calibrate else None
    path = export_model(model, output, fmt=fmt, int8=int8, calibrate=photos, scheme=int8_scheme)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="Run folder, model file or exported .onnx file.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes the service to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    runtime: Runtime = "auto",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Inference threads (requests beyond wait, up to --max-requests in flight).")] = 2,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest request body (413 beyond).")] = 20.0,
    max_requests: Annotated[int, typer.Option("--max-requests", min=1, help="Requests in flight at once: uploading, waiting or being labelled (503 beyond).")] = 8,
    upload_timeout: Annotated[float, typer.Option("--upload-timeout", min=0.1, help="Seconds for a request body to arrive (408 beyond).")] = 60.0,
    max_pixels: Annotated[Optional[int], typer.Option("--max-pixels", min=1, help="Largest photo, width x height (default: $WARDROBE_MAX_PIXELS or 40,000,000).")] = None,
    max_side: Annotated[Optional[int], typer.Option("--max-side", min=1, help="Longest side in pixels (default: $WARDROBE_MAX_SIDE or 12,000).")] = None,
    max_aspect: Annotated[Optional[float], typer.Option("--max-aspect", min=1, help="Largest aspect ratio (default: $WARDROBE_MAX_ASPECT or 25).")] = None,
):
    """Serve a model over HTTP: POST /v1/predict, GET /v1/model, /healthz, /docs, and a web page at /."""

    from wardrobe.data.images import (
        ImageLimits,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )
    from wardrobe.inference.serve import (  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
        Limits,
    )
    from wardrobe.inference.serve import serve as serve_api

    image = ImageLimits.from_env()
    image = replace(image, **{k: v for k, v in dict(max_pixels=max_pixels, max_side=max_side,
                                                     max_aspect=max_aspect).items() if v is not None})
    limits = Limits(max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_active_requests=max_requests,
                    upload_timeout_s=upload_timeout, image=image)
    serve_api(model, host=host, port=port, runtime=runtime, workers=workers, limits=limits)


@datasets_app.callback()
def datasets(ctx: typer.Context):
    """List the dataset presets and where their data is looked for."""
    if ctx.invoked_subcommand:
        return
    from wardrobe.data.presets import (  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
        PRESETS,
        dataset_root,
    )

    root = dataset_root()
    t = Table(title=f"presets (data folder: {root})")
    for col in ("name", "description", "available"):
        t.add_column(col)
    for p in PRESETS.values():
        t.add_row(p.name, p.description, "yes" if (root / p.manifest).is_file() else "no")
    results.print(t)


@datasets_app.command("download")
def datasets_download(
    dest: Annotated[Optional[Path], typer.Option("--dest", help="Data folder (default: $WARDROBE_DATA_DIR or ~/.cache/wardrobe/data).")] = None,
    if_missing: Annotated[bool, typer.Option("--if-missing", help="Do nothing when the dataset is already there.")] = False,
):
    """Download the upstream clothing dataset (needs internet)."""
    from wardrobe.data.presets import (  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
        DATASET_DIRNAME,
        PRESETS,
        data_dir,
        download,
    )
    from wardrobe.ui import (
        progress,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )

    root = (dest or data_dir()) / DATASET_DIRNAME
    if if_missing and all((root / p.manifest).is_file() for p in PRESETS.values()):
        console.print(f"dataset already in {root}")
        return

    with progress() as bar:
        root = download(dest, progress=bar)
    console.print(f"dataset ready in {root}")


@app.command()
def models():
    """List networks: parameters, input size, and whether pretrained weights are available here."""
    from wardrobe.models.registry import (
        model_catalogue,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )

    t = Table(title="models (any other timm name works too)")
    for col in ("name", "architecture", "params (M)", "input", "pretrained weights"):
        t.add_column(col, justify="right" if col in ("params (M)", "input") else "left",
                     no_wrap=col in ("name", "architecture"))
    for r in model_catalogue():
        t.add_row(r["name"], r["arch"], f"{r['params_m']:.1f}", str(r["input_size"]), r["pretrained"])
    results.print(t)


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
    ra = p.pop("randaugment", None)
    if ra:
        try:
            p["randaugment_n"], p["randaugment_m"] = (int(v) for v in ra.split(","))
        except ValueError:
            raise WardrobeError(f"--randaugment {ra}: expected N,M such as 2,9") from None
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
    from wardrobe.evaluation.cv import (  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
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
    from wardrobe.evaluation.compare import (  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
        compare as compare_api,
    )
    from wardrobe.evaluation.compare import leaderboard_table

    kwargs = _train_options(data, ctx.args)
    if "model" in kwargs:
        raise WardrobeError("compare: name the networks with --models a,b,c, not --model")
    result = compare_api(data, models.split(","), out, folds=folds, **kwargs)
    results.print(leaderboard_table(result))


@app.command()
def bench(
    model: Annotated[Path, typer.Argument(help="Run folder or model file.")],
    images: Annotated[Optional[list[Path]], typer.Option("--images", help="Photos to time with (repeatable; default: 32 synthetic 800x600 JPEGs).")] = None,
    runs: Annotated[int, typer.Option("--runs", min=5, help="Single-photo runs.")] = 50,
    batch_size: BatchSize = 32,
    runtime: Runtime = "auto",
    tta: Tta = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the figures as JSON here.")] = None,
):
    """Speed of a model on this machine: single-photo latency p50/p95 and batch throughput, with and
    without JPEG decoding; prints the CPU model and thread counts."""
    from wardrobe.data.images import (
        is_image_file,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )
    from wardrobe.evaluation.speed import (
        bench as bench_api,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )
    from wardrobe.evaluation.tables import (
        speed_table,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )
    from wardrobe.inference import (
        Classifier,  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
    )

    files = []
    for p in images or []:
        files += sorted(q for q in p.rglob("*") if is_image_file(q)) if p.is_dir() else [p]
    clf = Classifier.load(model, runtime=runtime, tta=tta)
    result = bench_api(clf, files or None, runtime=runtime, batch_size=batch_size, single_runs=runs)
    results.print(speed_table(result))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {output}")


data_app = typer.Typer(help="Inspect labelled photos before training on them.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("audit")
def data_audit(
    data: Annotated[str, typer.Argument(help="Preset name, folder or CSV/TSV manifest.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for audit.json, audit.html, class_histogram.png.")],
    write_clean: Annotated[Optional[Path], typer.Option("--write-clean", help="Also write a cleaned manifest CSV here (photos are never touched).")] = None,
    expected_labels: Annotated[Optional[str], typer.Option("--expected-labels", help="Comma-separated labels allowed (default: a preset's classes).")] = None,
    embeddings: Annotated[bool, typer.Option("--embeddings", help="Also compare backbone embeddings and look for label errors (slower; cached).")] = False,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Backbone for --embeddings (default efficientnet_lite0).")] = None,
    phash_bits: Annotated[int, typer.Option("--phash-bits", min=0, max=64, help="Near duplicates: pHash distance at most this many bits...")] = 14,
    thumb_similarity: Annotated[float, typer.Option("--thumb-similarity", help="...and 8x8 thumbnail similarity at least this.")] = 0.90,
    embedding_similarity: Annotated[float, typer.Option("--embedding-similarity", help="Near duplicates by embeddings: cosine at least this.")] = 0.97,
    drop_label_errors: Annotated[Optional[float], typer.Option("--drop-label-errors", help="With --write-clean and --embeddings: drop suspects whose probability of their label is below this.")] = None,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    runtime: Runtime = "auto",
    image_col: ImageCol = "image", label_col: LabelCol = "label", split_col: SplitCol = None,
    images_dir: ImagesDir = None, extension: Extension = None, label_regex: LabelRegex = None,
    label_map: LabelMap = None, include: Include = None, exclude: Exclude = None, rename: Rename = None,
    top_k_classes: TopK = None, min_count: MinCount = None,
):
    """Find what is wrong with labelled photos: missing, unreadable and unlabelled files, odd labels,
    sizes and colour modes, exact and near duplicates across splits, likely label errors."""
    from wardrobe.audit import (  # heavy: the API pulls in torch; imported per command so `wardrobe --help` stays fast
        AuditOptions,
        audit,
    )

    opts = _data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map,
                         include, exclude, rename, top_k_classes, min_count, False)
    expected = [x.strip() for x in expected_labels.split(",") if x.strip()] if expected_labels else None
    o = AuditOptions(expected_labels=expected, phash_threshold=phash_bits, thumb_similarity=thumb_similarity,
                     embeddings=embeddings, model=model, embedding_similarity=embedding_similarity,
                     workers=workers, batch_size=batch_size, runtime=runtime)
    result = audit(data, out, o, opts, write_clean=write_clean, drop_label_errors=drop_label_errors)
    t = Table(title=f"audit of {result['dataset']['name']} ({result['dataset']['labelled_rows']} rows)")
    t.add_column("finding")
    t.add_column("count", justify="right")
    for k, v in result["summary"].items():
        t.add_row(k.replace("_", " "), str(v))
    results.print(t)


def main() -> None:
    try:
        app()
    except WardrobeError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        sys.exit(130)


if __name__ == "__main__":
    main()
