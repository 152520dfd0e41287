"""Choosing and renaming classes: include/exclude lists, rename/merge map, top-K, minimum count."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from wardrobe.data.sources import Dataset
from wardrobe.errors import WardrobeError


def apply_filters(
    ds: Dataset,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    rename: dict[str, str] | None = None,
    top_k: int | None = None,
    min_count: int | None = None,
) -> Dataset:
    """Rename first (so merged classes are counted together), then include/exclude, then counts."""
    records = ds.records
    known = set(ds.class_counts())
    if rename:
        unknown = sorted(set(rename) - known)
        if unknown:
            raise WardrobeError(f"rename: no class {', '.join(map(repr, unknown))} in {ds.name} "
                                f"(classes: {', '.join(sorted(known))})")
        records = [replace(r, label=rename.get(r.label, r.label)) for r in records]
        known = {r.label for r in records}
    for option, names in (("include", include), ("exclude", exclude)):
        unknown = sorted(set(names or []) - known)
        if unknown:
            raise WardrobeError(f"--{option}: no class {', '.join(map(repr, unknown))} in {ds.name} "
                                f"(classes: {', '.join(sorted(known))})")
    if include:
        records = [r for r in records if r.label in set(include)]
    if exclude:
        records = [r for r in records if r.label not in set(exclude)]
    counts = Counter(r.label for r in records)
    if top_k:
        # Ties broken by name so that the same data always gives the same classes.
        keep = {c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]}
        records = [r for r in records if r.label in keep]
    if min_count:
        records = [r for r in records if counts[r.label] >= min_count]
    if not records:
        raise WardrobeError(f"{ds.name}: no photos left after filtering classes")
    desc = dict(ds.description, filters={"include": include, "exclude": exclude, "rename": rename,
                                          "top_k": top_k, "min_count": min_count})
    return Dataset(records, ds.name, ds.skipped, desc)
