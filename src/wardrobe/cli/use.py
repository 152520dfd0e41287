"""`wardrobe evaluate`, `predict`, `export`, `serve` and `bench`: using a trained model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from wardrobe.cli import common as opt
from wardrobe.cli.common import app
from wardrobe.errors import WardrobeError
from wardrobe.ui import console, results


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="Run folder or model file.")],
    data: Annotated[str, typer.Argument(help="Preset, folder or manifest with labels.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for metrics.json and the confusion matrix.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="train, validation, test or all (default: test, else validation, else all).")] = None,
    batch_size: opt.BatchSize = 32,
    workers: opt.Workers = None,
    runtime: opt.Runtime = "auto",
    tta: opt.Tta = False,
    robustness: Annotated[bool, typer.Option("--robustness", help="Also measure the photos under noise, blur, JPEG q20 and brightness changes.")] = False,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Fit a temperature on DATA's validation split and store it in the model file.")] = False,
    unknown: Annotated[Optional[Path], typer.Option("--unknown", help="A folder of photos of none of the model's classes: report how well they are called unknown.")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write report.html in --out.")] = False,
    image_col: opt.ImageCol = "image", label_col: opt.LabelCol = "label", split_col: opt.SplitCol = None,
    images_dir: opt.ImagesDir = None, extension: opt.Extension = None, label_regex: opt.LabelRegex = None,
    label_map: opt.LabelMap = None, include: opt.Include = None, exclude: opt.Exclude = None, rename: opt.Rename = None,
    top_k_classes: opt.TopK = None, min_count: opt.MinCount = None, strict: opt.Strict = False,
):
    """Measure a model on labelled photos: accuracy, F1, mAP, per-class metrics, confusion matrix,
    calibration (ECE); with --out also a reliability diagram and report.html."""
    from wardrobe.evaluation import evaluate as evaluate_api  # heavy: torch; imported per command

    opts = opt.data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map,
                         include, exclude, rename, top_k_classes, min_count, strict)
    result = evaluate_api(model, data, out, split=split, data_options=opts, batch_size=batch_size,
                          workers=workers, runtime=runtime, tta=tta, robustness=robustness, calibrate=calibrate,
                          report=not no_report, unknown=unknown)
    results.print(opt.metrics_table(result, f"{data} ({result['split']}, {result['n_images']} photos)"))
    cov = result["trusted_labels"]["coverage_at_precision"]
    results.print("trusted labels, coverage at precision " + ", ".join(f"{k}: {v:.3f}" for k, v in cov.items()))
    from wardrobe.evaluation.tables import calibration_line, robustness_table  # heavy: torch; imported per command

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
    batch_size: opt.BatchSize = 32,
    workers: opt.Workers = None,
    runtime: opt.Runtime = "auto",
    tta: opt.Tta = False,
    devices: Annotated[Optional[str], typer.Option("--devices", help="Devices (or CPU processes) for Lightning's predict loop; each rank writes a shard, merged at the end.")] = None,
    strategy: Annotated[Optional[str], typer.Option("--strategy", help="Lightning strategy for --devices, e.g. ddp.")] = None,
    accelerator: Annotated[Optional[str], typer.Option("--accelerator", help="auto, cpu or gpu (with --devices).")] = None,
):
    """Label photos with a trained model (run folder, model file or exported .onnx); rows are written
    batch by batch, one per photo, with an error column for unreadable ones."""
    from wardrobe.inference.batch import label_photos  # heavy: torch; imported per command

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
def label(
    model: Annotated[Path, typer.Argument(help="Run folder or model file (its trusted-label thresholds are in it).")],
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for accepted.csv, review.csv and summary.json.")],
    target_precision: Annotated[float, typer.Option("--target-precision", help="Share of auto-labels that must be right (thresholds fitted on validation for 0.9, 0.95, 0.97, 0.98, 0.99).")] = 0.98,
    conservative: Annotated[bool, typer.Option("--conservative", help="Thresholds with a finite-sample correction (one extra error): precision at least the target on exchangeable photos, fewer auto-labels.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Keep what OUT already holds and label only the photos in neither file.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace accepted.csv and review.csv in OUT.")] = False,
    batch_size: opt.BatchSize = 32,
    workers: opt.Workers = None,
    runtime: opt.Runtime = "auto",
):
    """Auto-label the photos whose label can be trusted at --target-precision (accepted.csv) and queue
    the rest for review, likeliest mistakes first (review.csv); unreadable photos go to review.csv
    with their error."""
    from wardrobe.inference.labelling import label_catalogue  # heavy: torch; imported per command

    s = label_catalogue(model, paths, out, target_precision, batch_size=batch_size, workers=workers, resume=resume,
                        overwrite=overwrite, runtime=runtime, conservative=conservative)
    done = f"; {s.skipped} were already labelled" if s.skipped else ""
    unknown = f", {s.unknown} of them unknown" if s.unknown else ""
    console.print(f"{s.accepted} auto-labelled (accepted.csv, {s.coverage:.1%}), {s.review} to review (review.csv{unknown}) "
                  f"in {out} ({s.rate:.1f} photos/s){done}")
    if s.failed:
        console.print(f"[yellow]{s.failed} photos could not be read (in review.csv with their error)[/yellow]")

@app.command()
def review(
    folder: Annotated[Path, typer.Argument(help="Folder with review.csv (from wardrobe label or data audit --queue).")],
    host: opt.Host = "127.0.0.1",
    port: opt.Port = 8001,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="The model (run folder or model file): the page then shows Grad-CAM explanations (key e).")] = None,
):
    """Review the queue by keyboard in a browser: accept, another label, unknown, skip, undo. Every
    decision is appended to FOLDER/corrections.csv at once (train --corrections reads it)."""
    from wardrobe.inference.review import review as review_api  # heavy: fastapi; imported per command

    review_api(folder, host=host, port=port, model=model)

@app.command()
def explain(
    model: Annotated[Path, typer.Argument(help="Run folder or model file (fine-tuned or probe).")],
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the overlays (NAME.gradcam.png).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace overlays already in OUT.")] = False,
):
    """Grad-CAM heat maps: which part of each photo made the model choose its label."""
    from wardrobe.inference.explain import explain_photos  # heavy: torch, grad-cam; imported per command

    rows = explain_photos(model, paths, out, overwrite=overwrite)
    for r in rows:
        if "error" in r:
            console.print(f"[yellow]{r['path']}: {r['error']}[/yellow]")
        else:
            console.print(f"{r['path']}: {r['label']} ({r['prob']:.1%}) -> {r['overlay']}")

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
    from wardrobe.inference.export import calibration_photos, export_model  # heavy: torch; imported per command

    if calibrate and not int8:
        raise WardrobeError("--calibrate goes with --int8")
    photos = calibration_photos(calibrate, calibrate_photos) if calibrate else None
    path = export_model(model, output, fmt=fmt, int8=int8, calibrate=photos, scheme=int8_scheme)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")

@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="Run folder, model file or exported .onnx file.")],
    host: opt.Host = "127.0.0.1",
    port: opt.Port = 8000,
    runtime: opt.Runtime = "auto",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Inference threads (requests beyond wait, up to --max-requests in flight).")] = 2,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest request body (413 beyond).")] = 20.0,
    max_requests: Annotated[int, typer.Option("--max-requests", min=1, help="Requests in flight at once: uploading, waiting or being labelled (503 beyond).")] = 8,
    upload_timeout: Annotated[float, typer.Option("--upload-timeout", min=0.1, help="Seconds for a request body to arrive (408 beyond).")] = 60.0,
    max_pixels: Annotated[Optional[int], typer.Option("--max-pixels", min=1, help="Largest photo, width x height (default: $WARDROBE_MAX_PIXELS or 40,000,000).")] = None,
    max_side: Annotated[Optional[int], typer.Option("--max-side", min=1, help="Longest side in pixels (default: $WARDROBE_MAX_SIDE or 12,000).")] = None,
    max_aspect: Annotated[Optional[float], typer.Option("--max-aspect", min=1, help="Largest aspect ratio (default: $WARDROBE_MAX_ASPECT or 25).")] = None,
):
    """Serve a model over HTTP: POST /v1/predict, GET /v1/model, /healthz, /docs, and a web page at /."""

    from wardrobe.data.images import ImageLimits  # heavy: torch; imported per command
    from wardrobe.inference.serve import Limits, serve as serve_api  # heavy: torch; imported per command

    image = ImageLimits.from_env()
    image = replace(image, **{k: v for k, v in dict(max_pixels=max_pixels, max_side=max_side,
                                                     max_aspect=max_aspect).items() if v is not None})
    limits = Limits(max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_active_requests=max_requests,
                    upload_timeout_s=upload_timeout, image=image)
    serve_api(model, host=host, port=port, runtime=runtime, workers=workers, limits=limits)

@app.command()
def bench(
    model: Annotated[Path, typer.Argument(help="Run folder or model file.")],
    images: Annotated[Optional[list[Path]], typer.Option("--images", help="Photos to time with (repeatable; default: 32 synthetic 800x600 JPEGs).")] = None,
    runs: Annotated[int, typer.Option("--runs", min=5, help="Single-photo runs.")] = 50,
    batch_size: opt.BatchSize = 32,
    runtime: opt.Runtime = "auto",
    tta: opt.Tta = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the figures as JSON here.")] = None,
):
    """Speed of a model on this machine: single-photo latency p50/p95 and batch throughput, with and
    without JPEG decoding; prints the CPU model and thread counts."""
    from wardrobe.data.images import is_image_file  # heavy: torch; imported per command
    from wardrobe.evaluation.speed import bench as bench_api  # heavy: torch; imported per command
    from wardrobe.evaluation.tables import speed_table  # heavy: torch; imported per command
    from wardrobe.inference import Classifier  # heavy: torch; imported per command

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
