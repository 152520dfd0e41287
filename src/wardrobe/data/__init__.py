"""Data: sources -> filters -> splits, plus decoding and caches."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from wardrobe.data.corrections import apply_corrections
from wardrobe.data.filters import apply_filters
from wardrobe.data.presets import PRESETS, load_preset
from wardrobe.data.sources import Dataset, Record, SkipReport, from_folder, from_manifest, from_regex, parse_mapping
from wardrobe.data.splits import assign_splits
from wardrobe.errors import WardrobeError

MANIFEST_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")


@dataclass
class DataOptions:
    """Every knob that turns a DATA argument into records; stored in each run's config."""

    image_col: str = "image"
    label_col: str = "label"
    split_col: str | None = None
    images_dir: str | None = None
    extension: str | None = None
    label_regex: str | None = None
    label_map: str | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    rename: str | None = None
    top_k: int | None = None
    min_count: int | None = None
    strict: bool = False
    corrections: str | None = None  # a review's corrections.csv: human labels override the data's
    keep_unknown: bool = False  # photos reviewed as unknown become a class of their own (else dropped)

    def to_dict(self) -> dict:
        return asdict(self)


def load_dataset(data: str | Path, options: DataOptions | None = None, **overrides) -> Dataset:
    """Resolve DATA (a preset name, a folder, or a manifest file) into filtered records."""
    unknown = set(overrides) - set(DataOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown data option {sorted(unknown)[0]!r}")
    opts = replace(options or DataOptions(), **overrides)  # the caller's options are left as they were
    text = str(data)
    path = Path(text).expanduser()
    if text in PRESETS:
        ds = load_preset(text, strict=opts.strict)
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        split_col = opts.split_col
        if split_col is None:
            # A column literally named "split" is what every split manifest we know uses.
            header = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[:1]
            if header and "split" in [c.strip() for c in header[0].replace("\t", ",").replace(";", ",").split(",")]:
                split_col = "split"
        ds = from_manifest(path, opts.images_dir, opts.image_col, opts.label_col, split_col or None,
                           opts.extension, strict=opts.strict)
    elif path.is_dir():
        if opts.label_regex:
            ds = from_regex(path, opts.label_regex, parse_mapping(opts.label_map), strict=opts.strict)
        else:
            ds = from_folder(path, strict=opts.strict)
    elif path.exists():
        raise WardrobeError(f"{path}: not a folder or a manifest ({', '.join(MANIFEST_SUFFIXES)})")
    else:
        raise WardrobeError(f"{text}: no such file, folder or preset (presets: {', '.join(PRESETS)})")
    if not ds.records:
        raise WardrobeError(f"{text}: no labelled photos found ({ds.skipped.summary()})")
    ds = apply_filters(ds, include=opts.include or None, exclude=opts.exclude or None,
                       rename=parse_mapping(opts.rename), top_k=opts.top_k, min_count=opts.min_count)
    if opts.corrections:
        ds = apply_corrections(ds, opts.corrections, opts.keep_unknown)
    return ds


def demo_photos(data: str | Path, n: int = 5) -> list[Path]:
    """One validation photo from each of ``n`` classes (the most common first): a demo that shows the
    model telling classes apart, not five photos of one."""
    ds = load_dataset(data)
    recs = ds.split("validation") or ds.records
    first: dict[str, Path] = {}
    for r in recs:
        first.setdefault(r.label, r.path)
    counts = {c: sum(r.label == c for r in recs) for c in first}
    return [first[c] for c in sorted(first, key=lambda c: -counts[c])[:n]]


__all__ = ["DataOptions", "Dataset", "Record", "SkipReport", "load_dataset", "assign_splits", "PRESETS",
           "demo_photos", "from_folder", "from_manifest", "from_regex"]
