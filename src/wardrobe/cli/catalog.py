"""`wardrobe datasets`, `models` and `data audit`: what is here before training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from wardrobe.cli import common as opt
from wardrobe.cli.common import app, data_app, datasets_app
from wardrobe.ui import console, results


@datasets_app.callback()
def datasets(ctx: typer.Context):
    """List the dataset presets and where their data is looked for."""
    if ctx.invoked_subcommand:
        return
    from wardrobe.data.presets import PRESETS, dataset_root  # heavy: torch; imported per command

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
    from wardrobe.data.presets import DATASET_DIRNAME, PRESETS, data_dir, download  # heavy: torch; imported per command
    from wardrobe.ui import progress  # heavy: torch; imported per command

    root = (dest or data_dir()) / DATASET_DIRNAME
    if if_missing and all((root / p.manifest).is_file() for p in PRESETS.values()):
        console.print(f"dataset already in {root}")
        return

    with progress() as bar:
        root = download(dest, progress=bar)
    console.print(f"dataset ready in {root}")

@app.command()
def models():
    """List networks: parameters, input size, and where pretrained weights come from here (offline
    package, local Hugging Face cache, the hub when online, none); any of them takes a weights file
    with --weights FILE."""
    from wardrobe.models.registry import model_catalogue  # heavy: torch; imported per command

    t = Table(title="models (any other timm name works too)",
              caption="Weights from a file or a hub-style folder: wardrobe train DATA --model NAME --weights FILE")
    for col in ("name", "architecture", "params (M)", "input", "pretrained weights here"):
        t.add_column(col, justify="right" if col in ("params (M)", "input") else "left",
                     no_wrap=col in ("name", "architecture"))
    for r in model_catalogue():
        t.add_row(r["name"], r["arch"], f"{r['params_m']:.1f}", str(r["input_size"]), r["pretrained"])
    results.print(t)

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
    queue: Annotated[Optional[Path], typer.Option("--queue", help="With --embeddings: write the suspected label errors as a review queue here (wardrobe review DIR).")] = None,
    batch_size: opt.BatchSize = 32,
    workers: opt.Workers = None,
    runtime: opt.Runtime = "auto",
    image_col: opt.ImageCol = "image", label_col: opt.LabelCol = "label", split_col: opt.SplitCol = None,
    images_dir: opt.ImagesDir = None, extension: opt.Extension = None, label_regex: opt.LabelRegex = None,
    label_map: opt.LabelMap = None, include: opt.Include = None, exclude: opt.Exclude = None, rename: opt.Rename = None,
    top_k_classes: opt.TopK = None, min_count: opt.MinCount = None,
):
    """Find what is wrong with labelled photos: missing, unreadable and unlabelled files, odd labels,
    sizes and colour modes, exact and near duplicates across splits, likely label errors."""
    from wardrobe.audit import AuditOptions, audit  # heavy: torch; imported per command

    opts = opt.data_options(image_col, label_col, split_col, images_dir, extension, label_regex, label_map,
                         include, exclude, rename, top_k_classes, min_count, False)
    expected = [x.strip() for x in expected_labels.split(",") if x.strip()] if expected_labels else None
    o = AuditOptions(expected_labels=expected, phash_threshold=phash_bits, thumb_similarity=thumb_similarity,
                     embeddings=embeddings, model=model, embedding_similarity=embedding_similarity,
                     workers=workers, batch_size=batch_size, runtime=runtime)
    result = audit(data, out, o, opts, write_clean=write_clean, drop_label_errors=drop_label_errors, queue=queue)
    t = Table(title=f"audit of {result['dataset']['name']} ({result['dataset']['labelled_rows']} rows)")
    t.add_column("finding")
    t.add_column("count", justify="right")
    for k, v in result["summary"].items():
        t.add_row(k.replace("_", " "), str(v))
    results.print(t)
