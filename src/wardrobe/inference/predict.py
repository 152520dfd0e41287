"""``wardrobe.predict``: label files, folders (recursive) and globs; write CSV or JSON."""

from __future__ import annotations

import glob
import io
from pathlib import Path

from wardrobe.data.images import is_image_file
from wardrobe.data.sources import iter_images
from wardrobe.errors import WardrobeError
from wardrobe.inference.classifier import Classifier
from wardrobe.inference.rows import FORMATS, RowWriter


def expand_paths(inputs: list[str | Path]) -> list[Path]:
    """Files as given (even with an odd extension: they get an error row if not images), folders
    searched recursively for images, glob patterns expanded. Order kept, duplicates dropped."""
    out: list[Path] = []
    for item in inputs:
        text = str(item)
        p = Path(text).expanduser()
        if p.is_dir():
            out.extend(iter_images(p))
        elif p.is_file():
            out.append(p)
        elif any(ch in text for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file() and is_image_file(m)]
            for m in matches:
                if m.is_dir():
                    files.extend(iter_images(m))
            if not files:
                raise WardrobeError(f"{text}: pattern matches no image")
            out.extend(files)
        else:
            out.append(p)  # reported as "missing file" in its own row, not a crash
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def predict(model: str | Path | Classifier, paths: list[str | Path], top_k: int = 3, batch_size: int = 32,
            runtime: str = "auto", show_progress: bool = True, tta: bool = False) -> list[dict]:
    clf = model if isinstance(model, Classifier) else Classifier.load(model, runtime=runtime, tta=tta)
    files = expand_paths(paths)
    if not files:
        raise WardrobeError("no images to label")
    return clf.predict(files, top_k=top_k, batch_size=batch_size, show_progress=show_progress)


def format_rows(rows: list[dict], fmt: str, top_k: int) -> str:
    """Rows as one CSV, JSONL or JSON text, written as ``wardrobe predict`` streams them."""
    if fmt not in FORMATS:
        raise WardrobeError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    buf = io.StringIO()
    writer = RowWriter(buf, fmt, top_k, fresh=True)
    writer.write(rows)
    writer.close()
    return buf.getvalue()
