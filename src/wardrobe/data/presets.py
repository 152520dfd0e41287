"""Named benchmark datasets under ``$WARDROBE_DATA_DIR/clothing-dataset``, and their download."""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from wardrobe.data.filters import apply_filters
from wardrobe.data.sources import Dataset, from_manifest
from wardrobe.errors import WardrobeError

UPSTREAM_FULL = "https://github.com/alexeygrigorev/clothing-dataset/archive/refs/heads/master.zip"
UPSTREAM_SMALL = "https://github.com/alexeygrigorev/clothing-dataset-small/archive/refs/heads/master.zip"
DATASET_DIRNAME = "clothing-dataset"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    manifest: str
    split_col: str | None
    exclude: tuple[str, ...] = ()


PRESETS = {
    p.name: p
    for p in (
        Preset("clothing-top10", "10 most frequent classes, upstream train/validation split (top10-split.csv)",
               "top10-split.csv", "split"),
        Preset("clothing-17", "17 garment classes of images.csv (drops Not sure, Other, Skip); stratified split",
               "images.csv", None, ("Not sure", "Other", "Skip")),
    )
}


def data_dir() -> Path:
    """``$WARDROBE_DATA_DIR`` when set, else the folder ``wardrobe datasets download`` fills."""
    env = os.environ.get("WARDROBE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wardrobe" / "data"


def dataset_root() -> Path:
    return data_dir() / DATASET_DIRNAME


def load_preset(name: str, strict: bool = False) -> Dataset:
    preset = PRESETS[name]
    root = dataset_root()
    manifest = root / preset.manifest
    if not manifest.is_file():
        raise WardrobeError(
            f"{name}: {manifest} not found; run 'wardrobe datasets download' (needs internet) "
            f"or set WARDROBE_DATA_DIR to a folder that holds {DATASET_DIRNAME}/"
        )
    ds = from_manifest(manifest, root / "images", image_col="image", label_col="label",
                       split_col=preset.split_col, extension=".jpg", strict=strict)
    if preset.exclude:
        present = set(ds.class_counts())
        ds = apply_filters(ds, exclude=[c for c in preset.exclude if c in present])
    ds.name = name
    ds.description = dict(ds.description, preset=name)
    return ds


def _fetch(url: str, progress=None, timeout: float = 30.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            task = progress.add_task(f"download {url.split('/')[4]}", total=total or None) if progress else None
            buf = io.BytesIO()
            while chunk := resp.read(1 << 20):
                buf.write(chunk)
                if progress:
                    progress.update(task, advance=len(chunk))
            return buf.getvalue()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WardrobeError(
            f"cannot download {url} ({reason}); this machine seems offline: copy the dataset to "
            f"$WARDROBE_DATA_DIR/{DATASET_DIRNAME}/ (images/, images.csv, top10-split.csv) instead"
        ) from None


def download(dest: Path | None = None, progress=None, fetch=_fetch) -> Path:
    """Fetch the upstream photos and write the layout the presets read. Returns the dataset folder."""
    root = (dest or data_dir()) / DATASET_DIRNAME
    full = zipfile.ZipFile(io.BytesIO(fetch(UPSTREAM_FULL, progress)))
    small = zipfile.ZipFile(io.BytesIO(fetch(UPSTREAM_SMALL, progress)))
    root.parent.mkdir(parents=True, exist_ok=True)
    # Unpack beside the destination and rename at the end, so an interrupted download leaves nothing half-made.
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root.parent))
    try:
        (tmp / "images").mkdir(parents=True)
        for info in full.infolist():
            parts = Path(info.filename).parts
            if len(parts) >= 3 and parts[1] == "images" and not info.is_dir():
                (tmp / "images" / parts[-1]).write_bytes(full.read(info))
            elif len(parts) == 2 and parts[1] == "images.csv":
                (tmp / "images.csv").write_bytes(full.read(info))
        rows = []
        for info in small.infolist():
            parts = Path(info.filename).parts  # <repo>/<split>/<label>/<id>.jpg
            if len(parts) == 4 and not info.is_dir() and parts[1] in ("train", "validation", "test"):
                rows.append((Path(parts[3]).stem, parts[2], parts[1]))
        with (tmp / "top10-split.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "label", "split"])
            w.writerows(sorted(rows, key=lambda r: (r[2] != "train", r[1], r[0])))
        if not (tmp / "images.csv").is_file() or not rows:
            raise WardrobeError("downloaded archives do not have the expected layout (images/, images.csv)")
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
