"""Data sources: folder per class, CSV/TSV manifest, labels parsed from file names, presets.

Every source yields the same thing, a :class:`Dataset` of ``Record(path, label, split)``, plus a
:class:`SkipReport` of what was left out and why.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from wardrobe.data.images import IMAGE_EXTENSIONS, is_image_file
from wardrobe.errors import WardrobeError

SPLIT_ALIASES = {
    "train": "train", "training": "train", "trn": "train",
    "validation": "validation", "val": "validation", "valid": "validation", "dev": "validation",
    "test": "test", "testing": "test", "tst": "test",
}


@dataclass(frozen=True)
class Record:
    path: Path
    label: str
    split: str | None = None


@dataclass
class SkipReport:
    """What a source left out. ``strict`` turns the first problem into an error instead."""

    strict: bool = False
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str | Path, reason: str) -> None:
        if self.strict:
            raise WardrobeError(f"{where}: {reason}")
        self.items.append((str(where), reason))

    def extend(self, other: "SkipReport") -> None:
        self.items.extend(other.items)

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> Counter:
        return Counter(_reason_kind(r) for _, r in self.items)

    def summary(self, first: int = 3) -> str:
        if not self.items:
            return "nothing skipped"
        kinds = ", ".join(f"{n} {k}" for k, n in self.counts().most_common())
        shown = "; ".join(f"{w}: {r}" for w, r in self.items[:first])
        more = f" (+{len(self.items) - first} more)" if len(self.items) > first else ""
        return f"skipped {len(self.items)}: {kinds} - e.g. {shown}{more}"

    def to_dict(self) -> dict:
        return {"count": len(self.items), "by_reason": dict(self.counts()),
                "items": [{"where": w, "reason": r} for w, r in self.items]}


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0]


@dataclass
class Dataset:
    records: list[Record]
    name: str
    skipped: SkipReport
    description: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return sorted({r.label for r in self.records})

    def class_counts(self) -> Counter:
        return Counter(r.label for r in self.records)

    @property
    def has_splits(self) -> bool:
        return any(r.split for r in self.records)

    def split(self, name: str) -> list[Record]:
        return [r for r in self.records if r.split == name]


def normalise_split(value: str, where: str) -> str:
    key = value.strip().lower()
    if key not in SPLIT_ALIASES:
        raise WardrobeError(f"{where}: unknown split '{value}' (use train, validation or test)")
    return SPLIT_ALIASES[key]


def iter_images(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not name.startswith(".") and is_image_file(p):
                out.append(p)
    return out


def from_folder(root: str | Path, strict: bool = False) -> Dataset:
    """One sub-folder per class; photos may sit at any depth below their class folder."""
    root = Path(root)
    if not root.is_dir():
        raise WardrobeError(f"{root}: not a folder")
    skipped = SkipReport(strict=strict)
    records: list[Record] = []
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise WardrobeError(f"{root}: no class sub-folders (expected {root}/<class>/<photo>.jpg)")
    for d in class_dirs:
        files = iter_images(d)
        if not files:
            skipped.add(d, "empty class (no images in folder)")
        records.extend(Record(p, d.name) for p in files)
    stray = [p for p in root.iterdir() if p.is_file() and is_image_file(p)]
    for p in stray:
        skipped.add(p, "no label (image outside any class folder)")
    return Dataset(records, root.name, skipped, {"type": "folder", "root": str(root)})


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise WardrobeError(f"{path}: manifest not found") from None
    except UnicodeDecodeError:
        raise WardrobeError(f"{path}: manifest is not UTF-8 text") from None
    if not text.strip():
        raise WardrobeError(f"{path}: manifest is empty")
    if path.suffix.lower() in (".tsv", ".tab"):
        delimiter = "\t"
    else:
        first = text.splitlines()[0]
        delimiter = max([",", "\t", ";"], key=first.count)
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = columns
    return columns, list(reader)


def from_manifest(
    manifest: str | Path,
    images_dir: str | Path | None = None,
    image_col: str = "image",
    label_col: str = "label",
    split_col: str | None = None,
    extension: str | None = None,
    strict: bool = False,
) -> Dataset:
    """A CSV/TSV with a column of image paths (relative to ``images_dir``) and one of labels.

    The image column may omit the extension (the upstream clothing ``images.csv`` stores ids):
    ``extension`` is appended when given, otherwise the usual image extensions are tried.
    """
    manifest = Path(manifest)
    images_dir = Path(images_dir) if images_dir else manifest.parent
    columns, rows = read_table(manifest)
    for role, col in (("image", image_col), ("label", label_col), ("split", split_col)):
        if col and col not in columns:
            raise WardrobeError(
                f"{manifest}: no {role} column '{col}' (columns: {', '.join(columns)}); "
                f"choose one with --{role}-col"
            )
    if not images_dir.is_dir():
        raise WardrobeError(f"{images_dir}: images folder not found")
    existing = {p.name for p in images_dir.iterdir()} if images_dir.is_dir() else set()
    skipped = SkipReport(strict=strict)
    records: list[Record] = []
    for i, row in enumerate(rows, start=2):
        where = f"{manifest.name}:{i}"
        ref = (row.get(image_col) or "").strip()
        label = (row.get(label_col) or "").strip()
        if not ref:
            skipped.add(where, "no image in row")
            continue
        path = resolve_image(images_dir, ref, extension, existing)
        if path is None:
            skipped.add(f"{where} ({ref})", "missing file")
            continue
        if not label:
            skipped.add(f"{where} ({ref})", "no label")
            continue
        split = normalise_split(row[split_col], where) if split_col and (row.get(split_col) or "").strip() else None
        records.append(Record(path, label, split))
    return Dataset(records, manifest.stem, skipped,
                   {"type": "manifest", "manifest": str(manifest), "images_dir": str(images_dir),
                    "image_col": image_col, "label_col": label_col, "split_col": split_col,
                    "extension": extension})


def resolve_image(images_dir: Path, ref: str, extension: str | None, names_in_dir: set[str]) -> Path | None:
    rel = Path(ref)
    candidates = [ref + extension] if extension else [ref] + ([ref + e for e in IMAGE_EXTENSIONS] if not rel.suffix else [])
    for c in candidates:
        # Files directly in images_dir are checked against one directory listing (fast for 10^5 rows).
        if "/" not in c and os.sep not in c:
            if c in names_in_dir:
                return images_dir / c
        else:
            p = images_dir / c
            if p.is_file():
                return p
    return None


def from_regex(root: str | Path, pattern: str, label_map: dict[str, str] | None = None,
               strict: bool = False) -> Dataset:
    """Photos anywhere below ``root``; the regex's named group ``label`` takes the class from the
    file name (e.g. ``r'^\\d+_(?P<label>\\d+)\\.jpg$'`` for ``<row>_<class>.jpg``)."""
    root = Path(root)
    if not root.is_dir():
        raise WardrobeError(f"{root}: not a folder")
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise WardrobeError(f"label pattern '{pattern}': invalid regular expression ({exc})") from None
    if "label" not in rx.groupindex:
        raise WardrobeError(f"label pattern '{pattern}': needs a named group (?P<label>...)")
    skipped = SkipReport(strict=strict)
    records: list[Record] = []
    for p in iter_images(root):
        m = rx.search(p.name)
        if not m or not m.group("label"):
            skipped.add(p, "no label (file name does not match pattern)")
            continue
        code = m.group("label")
        if label_map is not None:
            if code not in label_map:
                skipped.add(p, f"unknown label code '{code}'")
                continue
            code = label_map[code]
        records.append(Record(p, code))
    return Dataset(records, root.name, skipped, {"type": "regex", "root": str(root), "pattern": pattern,
                                                  "label_map": label_map})


def parse_mapping(text: str | None) -> dict[str, str] | None:
    """``'0=dress,1=hat'`` or a path to a JSON object / two-column CSV, into a dict."""
    if not text:
        return None
    p = Path(text)
    if p.is_file():
        if p.suffix.lower() == ".json":
            try:
                data = json.loads(p.read_text())
            except json.JSONDecodeError as exc:
                raise WardrobeError(f"{p}: not valid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise WardrobeError(f"{p}: expected a JSON object mapping codes to names")
            return {str(k): str(v) for k, v in data.items()}
        with p.open(newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r]
        if any(len(r) < 2 for r in rows):
            raise WardrobeError(f"{p}: expected two columns, code and name")
        return {r[0].strip(): r[1].strip() for r in rows}
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise WardrobeError(f"mapping '{text}': expected entries like old=new separated by commas")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out
