"""``wardrobe.evaluate``: a model file against labelled photos, into metrics.json and figures."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from wardrobe.data import DataOptions, load_dataset
from wardrobe.data.sources import Dataset
from wardrobe.errors import WardrobeError
from wardrobe.evaluation.metrics import compute_metrics
from wardrobe.evaluation.plots import plot_confusion, write_confusion_csv
from wardrobe.inference.classifier import Classifier
from wardrobe.ui import info, warn


def _norm(label: str) -> str:
    return re.sub(r"[\s_\-]+", "", label.casefold())


def match_labels(data_labels: list[str], classes: list[str]) -> dict[str, str]:
    """Map each data label onto a model class: exactly, else ignoring case, spaces, '-' and '_'
    ("T-Shirt" and "t-shirt" are one class). Labels with no match are an error naming them."""
    by_norm: dict[str, list[str]] = {}
    for c in classes:
        by_norm.setdefault(_norm(c), []).append(c)
    mapping, unknown = {}, []
    for label in data_labels:
        if label in classes:
            mapping[label] = label
        elif len(by_norm.get(_norm(label), [])) == 1:
            mapping[label] = by_norm[_norm(label)][0]
        else:
            unknown.append(label)
    if unknown:
        raise WardrobeError(f"labels unknown to the model: {', '.join(sorted(unknown))} "
                            f"(model classes: {', '.join(classes)}); drop them with --exclude or map them with --rename")
    return mapping


def pick_split(ds: Dataset, split: str | None) -> tuple[str, list]:
    if split == "all" or (split is None and not ds.has_splits):
        return "all", ds.records
    if split is None:
        split = "test" if ds.split("test") else "validation"
    recs = ds.split(split)
    if not recs:
        raise WardrobeError(f"{ds.name}: the {split} split is empty (use --split all to evaluate every photo)")
    return split, recs


def evaluate(model: str | Path | Classifier, data: str | Path, out: str | Path | None = None,
             split: str | None = None, data_options: DataOptions | None = None, batch_size: int = 32,
             workers: int | None = None, runtime: str = "auto", show_progress: bool = True, tta: bool = False,
             **data_overrides) -> dict:
    t0 = time.perf_counter()
    clf = model if isinstance(model, Classifier) else Classifier.load(model, runtime=runtime, tta=tta)
    opts = data_options or DataOptions()
    ds = load_dataset(data, opts, **data_overrides)
    split, recs = pick_split(ds, split)
    mapping = match_labels(sorted({r.label for r in recs}), clf.classes)
    index = {c: i for i, c in enumerate(clf.classes)}
    probs, errors = clf.predict_proba([r.path for r in recs], batch_size, workers, show_progress, "evaluate")
    for i, reason in sorted(errors.items()):
        ds.skipped.add(recs[i].path, reason)
    if len(ds.skipped):
        warn(ds.skipped.summary())
    ok = np.array([i not in errors for i in range(len(recs))], dtype=bool)
    if not ok.any():
        raise WardrobeError(f"{ds.name}: none of the {len(recs)} photos could be read")
    y = np.array([index[mapping[r.label]] for r in recs])[ok]
    metrics = compute_metrics(y, probs[ok], clf.classes)
    seconds = time.perf_counter() - t0
    result = {"model": str(model if not isinstance(model, Classifier) else "<in memory>"), "data": str(data),
              "split": split, "tta": clf.tta, **metrics, "seconds": round(seconds, 2), "skipped": ds.skipped.to_dict()}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        cm = np.array(metrics["confusion_matrix"])
        write_confusion_csv(cm, clf.classes, out / "confusion_matrix.csv")
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        np.savetxt(out / "confusion_matrix_normalized.csv", norm, delimiter=",", fmt="%.4f",
                   header=",".join(clf.classes), comments="")
        plot_confusion(cm, clf.classes, out / "confusion_matrix.png", title=f"{ds.name} ({split})")
        info(f"wrote {out / 'metrics.json'}, confusion_matrix.csv/.png")
    return result
