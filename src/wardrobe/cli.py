"""The ``wardrobe`` command: a thin layer of options over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

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


def _data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map, include,
                  exclude, rename, top_k_classes, min_count, strict):
    from wardrobe.data import DataOptions

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


@app.command()
def train(
    data: Annotated[str, typer.Argument(help="Preset name, folder (one sub-folder per class, or --label-regex) or CSV/TSV manifest.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    mode: Annotated[str, typer.Option("--mode", help="probe: frozen backbone + logistic regression on cached embeddings.")] = "probe",
    model: Annotated[str, typer.Option("--model", "-m", help="Backbone ('wardrobe models' lists them).")] = "efficientnet_lite0",
    val_ratio: Annotated[float, typer.Option("--val-ratio", help="Validation share when DATA has no split column.")] = 0.15,
    test_ratio: Annotated[float, typer.Option("--test-ratio", help="Test share when DATA has no split column.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    runtime: Runtime = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute embeddings instead of reusing the cache.")] = False,
    image_col: ImageCol = "image", label_col: LabelCol = "label", split_col: SplitCol = None,
    images_dir: ImagesDir = None, extension: Extension = None, label_regex: LabelRegex = None,
    label_map: LabelMap = None, include: Include = None, exclude: Exclude = None, rename: Rename = None,
    top_k_classes: TopK = None, min_count: MinCount = None, strict: Strict = False,
):
    """Train a classifier on labelled photos; writes OUT/model.safetensors, config.json, metrics.json."""
    from wardrobe.training import train as train_api

    opts = _data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map,
                         include, exclude, rename, top_k_classes, min_count, strict)
    result = train_api(data, out, mode=mode, model=model, data_options=opts, val_ratio=val_ratio,
                       test_ratio=test_ratio, seed=seed, batch_size=batch_size, workers=workers, runtime=runtime,
                       use_cache=not no_cache)
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
    image_col: ImageCol = "image", label_col: LabelCol = "label", split_col: SplitCol = None,
    images_dir: ImagesDir = None, extension: Extension = None, label_regex: LabelRegex = None,
    label_map: LabelMap = None, include: Include = None, exclude: Exclude = None, rename: Rename = None,
    top_k_classes: TopK = None, min_count: MinCount = None, strict: Strict = False,
):
    """Measure a model on labelled photos: accuracy, F1, mAP, per-class metrics, confusion matrix."""
    from wardrobe.evaluation import evaluate as evaluate_api

    opts = _data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map,
                         include, exclude, rename, top_k_classes, min_count, strict)
    result = evaluate_api(model, data, out, split=split, data_options=opts, batch_size=batch_size,
                          workers=workers, runtime=runtime)
    results.print(_metrics_table(result, f"{data} ({result['split']}, {result['n_images']} photos)"))


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Run folder or model file.")],
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels per photo.")] = 3,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or json.")] = "csv",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of standard output.")] = None,
    batch_size: BatchSize = 32,
    runtime: Runtime = "auto",
):
    """Label photos with a trained model; one row per photo, an error column for unreadable ones."""
    from wardrobe.inference import format_rows, predict as predict_api

    if fmt not in ("csv", "json"):
        raise WardrobeError(f"--format must be csv or json, not '{fmt}'")
    rows = predict_api(model, paths, top_k=top_k, batch_size=batch_size, runtime=runtime)
    text = format_rows(rows, fmt, top_k)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        console.print(f"wrote {len(rows)} rows to {output}")
    else:
        sys.stdout.write(text)
    failed = sum(1 for r in rows if r["error"])
    if failed:
        console.print(f"[yellow]{failed} of {len(rows)} photos could not be read (see the error column)[/yellow]")


@datasets_app.callback()
def datasets(ctx: typer.Context):
    """List the dataset presets and where their data is looked for."""
    if ctx.invoked_subcommand:
        return
    from wardrobe.data.presets import PRESETS, dataset_root

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
    from wardrobe.data.presets import DATASET_DIRNAME, PRESETS, data_dir, download
    from wardrobe.ui import progress

    root = (dest or data_dir()) / DATASET_DIRNAME
    if if_missing and all((root / p.manifest).is_file() for p in PRESETS.values()):
        console.print(f"dataset already in {root}")
        return

    with progress() as bar:
        root = download(dest, progress=bar)
    console.print(f"dataset ready in {root}")


@app.command()
def models():
    """List backbones: offline pretrained ones, and a reminder that any timm name works online."""
    from wardrobe.models.lite import LITE_INPUT_SIZE, LITE_PACKAGES

    t = Table(title="models")
    for col in ("name", "timm architecture", "input size", "pretrained here"):
        t.add_column(col)
    for name, (arch, pkg, _) in LITE_PACKAGES.items():
        t.add_row(name, arch, str(LITE_INPUT_SIZE[name]), f"yes ({pkg.replace('_', '-')})")
    t.add_row("any timm name", "e.g. resnet50, convnext_tiny", "model's own", "only when online")
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
