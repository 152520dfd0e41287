"""Train/validation/test splits: an explicit split column, or stratified ratios with a seed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.model_selection import train_test_split

from wardrobe.data.sources import Dataset
from wardrobe.errors import WardrobeError


def assign_splits(ds: Dataset, val_ratio: float = 0.15, test_ratio: float = 0.0, seed: int = 0,
                  use_existing: bool = True) -> Dataset:
    """Keep the source's own split column when it has one; otherwise split each class in proportion."""
    if use_existing and ds.has_splits:
        missing = [r for r in ds.records if not r.split]
        if missing:
            raise WardrobeError(f"{ds.name}: {len(missing)} rows have no split value (e.g. {missing[0].path})")
        if not ds.split("train"):
            raise WardrobeError(f"{ds.name}: the split column has no 'train' rows")
        return ds
    if not 0 <= val_ratio < 1 or not 0 <= test_ratio < 1 or val_ratio + test_ratio >= 1:
        raise WardrobeError(f"split ratios: validation {val_ratio} and test {test_ratio} must be in [0, 1) "
                            "and leave room for training")
    labels = np.array([r.label for r in ds.records])
    counts = {str(c): int((labels == c).sum()) for c in np.unique(labels)}
    needed = 1 + bool(val_ratio) + bool(test_ratio)
    small = sorted(c for c, n in counts.items() if n < needed)
    if small:
        raise WardrobeError(f"{ds.name}: class {', '.join(map(repr, small))} has fewer than {needed} photos, "
                            "too few to split (drop it with --exclude or --min-count)")
    idx = np.arange(len(labels))
    split = np.array(["train"] * len(labels), dtype=object)
    rest = idx
    if val_ratio:  # 0: every photo trains (a final model, after CV chose the recipe)
        rest, val = _stratified(ds.name, "validation", idx, val_ratio, labels, seed)
        split[val] = "validation"
    if test_ratio:
        train, test = _stratified(ds.name, "test", rest, test_ratio / (1 - val_ratio), labels[rest], seed)
        split[test] = "test"
    records = [replace(r, split=str(s)) for r, s in zip(ds.records, split)]
    desc = dict(ds.description, split={"val_ratio": val_ratio, "test_ratio": test_ratio, "seed": seed})
    return Dataset(records, ds.name, ds.skipped, desc)


def _stratified(name: str, what: str, idx: np.ndarray, ratio: float, labels: np.ndarray, seed: int):
    try:
        return train_test_split(idx, test_size=ratio, stratify=labels, random_state=seed)
    except ValueError as e:  # e.g. 4 photos of 2 classes: a 15% share is 1 photo, fewer than the classes
        raise WardrobeError(f"{name}: {len(idx)} photos of {len(np.unique(labels))} classes are too few for a "
                            f"stratified {what} share of {ratio:.2f} ({e}); add photos or change the ratio") from None
