"""A clean manifest from an audit: the photos worth training on."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

from wardrobe.data.sources import Dataset
from wardrobe.errors import WardrobeError
from wardrobe.ui import info


def write_clean_manifest(ds: Dataset, result: dict, path: Path, drop_label_errors: float | None = None) -> dict:
    """A manifest of the photos worth training on. Reads the audit, writes one CSV, touches no photo.

    Drops unreadable photos (missing ones are not in the dataset to begin with), keeps one photo per
    exact-duplicate group (a train one when the group spans splits; a group whose labels disagree
    keeps its majority label's photo, or none on a tie), and with ``drop_label_errors`` P drops the
    suspected label errors whose cross-validated probability of their own label is below P.
    """
    drop: dict[str, str] = {}
    for u in result["unreadable"]:
        drop[u["path"]] = f"unreadable ({u['reason']})"
    for g in result["exact_duplicates"]["groups"]:
        members = g["members"]
        votes = Counter(m["label"] for m in members).most_common()
        if len(votes) > 1 and votes[0][1] == votes[1][1]:
            for m in members:
                drop.setdefault(m["path"], "exact duplicate with conflicting labels")
            continue
        keep_label = votes[0][0]
        candidates = [m for m in members if m["label"] == keep_label]
        keep = min(candidates, key=lambda m: (m["split"] not in (None, "train"), m["path"]))
        for m in members:
            if m is not keep:
                drop.setdefault(m["path"], f"exact duplicate of {keep['path']}")
    if drop_label_errors is not None:
        if "label_errors" not in result:
            raise WardrobeError("--drop-label-errors needs --embeddings (label errors come from backbone embeddings)")
        for s in result["label_errors"]["suspects"]:
            if s["prob_given"] < drop_label_errors:
                drop.setdefault(s["path"], f"suspected label error (p={s['prob_given']:.3f})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    with_split = ds.has_splits
    seen: set[str] = set()
    kept = 0
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "label", "split"] if with_split else ["image", "label"])
        for r in ds.records:
            p = str(r.path)
            key = os.path.normpath(p)
            if p in drop or key in drop or key in seen:
                continue
            seen.add(key)
            absolute = Path(p).resolve()
            try:
                ref = str(absolute.relative_to(base))
            except ValueError:
                ref = str(absolute)  # outside the manifest's folder: an absolute path still resolves
            w.writerow([ref, r.label, r.split] if with_split else [ref, r.label])
            kept += 1
    info(f"wrote {path}: {kept} photos kept, {len(drop)} dropped (no photo was moved or changed)")
    return {"path": str(path), "kept": kept, "dropped": [{"path": p, "why": why} for p, why in sorted(drop.items())]}
