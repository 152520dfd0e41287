"""What every command shares: the Typer apps, the data options, the metrics table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

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

Host = Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes it to the network.")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535)]
Tta = Annotated[bool, typer.Option("--tta", help="Test-time augmentation: average each photo with its mirror image.")]

def data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map, include,
                  exclude, rename, top_k_classes, min_count, strict):
    from wardrobe.data import DataOptions  # heavy: torch; imported per command

    return DataOptions(image_col=image_col, label_col=label_col, split_col=split_col,
                       images_dir=str(images_dir) if images_dir else None, extension=extension,
                       label_regex=label_regex, label_map=label_map, include=include or [], exclude=exclude or [],
                       rename=rename, top_k=top_k_classes, min_count=min_count, strict=strict)

def metrics_table(metrics: dict, title: str) -> Table:
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

data_app = typer.Typer(help="Inspect labelled photos before training on them.", no_args_is_help=True)

app.add_typer(data_app, name="data")
