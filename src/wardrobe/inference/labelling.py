"""Selective labelling of a catalogue: every photo lands in exactly one of two files,
``accepted.csv`` (auto-labelled: its probability reaches its class's trusted-label threshold) or
``review.csv`` (the rest, and unreadable photos with their error), streamed like ``predict``.

Resuming reads both files back and labels only the photos in neither. When every photo is done,
``review.csv`` is put in review order: the labels most likely wrong first, unreadable photos last.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from wardrobe.errors import WardrobeError
from wardrobe.files import drop_partial_last_line
from wardrobe.inference.batch import iter_rows
from wardrobe.inference.classifier import Classifier
from wardrobe.inference.predict import expand_paths
from wardrobe.selection import NEVER, thresholds_for
from wardrobe.ui import info, progress

ACCEPTED_COLUMNS = ["path", "label", "prob"]
# label: the model's label, or "unknown" when the photo is unlike every class (model_label then
# keeps what the model would have said); threshold: the trusted-label threshold it missed.
REVIEW_COLUMNS = ["path", "label", "prob", "model_label", "label_2", "prob_2", "label_3", "prob_3", "threshold",
                  "unknown_score", "error"]


@dataclass
class LabelSummary:
    accepted: int = 0
    review: int = 0
    unknown: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0
    seconds: float = 0.0
    target: float = 0.98

    @property
    def coverage(self) -> float:
        done = self.accepted + self.review
        return self.accepted / done if done else 0.0

    @property
    def rate(self) -> float:
        return (self.accepted + self.review) / self.seconds if self.seconds > 0 else 0.0


def stored_thresholds(clf: Classifier, target: float, name: str, conservative: bool = False) -> dict[str, float]:
    selection = clf.meta.get("selection")
    if not selection:
        raise WardrobeError(f"{name}: the model file has no trusted-label thresholds (a run without a validation "
                            "split, or an older wardrobe); fit them with `wardrobe evaluate MODEL DATA --calibrate`")
    if abs(float(selection.get("temperature", 1.0)) - clf.temperature) > 1e-6:
        raise WardrobeError(f"{name}: its thresholds were fitted at another temperature; refit them with "
                            "`wardrobe evaluate MODEL DATA --calibrate`")
    found = thresholds_for(selection, target, conservative)
    if found is None:
        have = ", ".join(selection.get("targets", {}))
        raise WardrobeError(f"--target-precision {target:g}: no thresholds fitted for it (this model has {have})")
    return found


def _read_paths(path: Path) -> set[str]:
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    drop_partial_last_line(path)
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows, None)
        return {r[0] for r in rows if r}


def _open(path: Path, columns: list[str], append: bool):
    fresh = not (append and path.is_file() and path.stat().st_size > 0)
    f = path.open("a" if append else "w", newline="", encoding="utf-8")
    w = csv.writer(f)
    if fresh:
        w.writerow(columns)
    return f, w


def label_catalogue(model, inputs: list[str | Path], out: str | Path, target_precision: float = 0.98,
                    batch_size: int = 32, workers: int | None = None, resume: bool = False, overwrite: bool = False,
                    runtime: str = "auto", show_progress: bool = True, conservative: bool = False) -> LabelSummary:
    """Split the photos named by ``inputs`` into ``out/accepted.csv`` and ``out/review.csv``.
    ``conservative``: the thresholds with conformal risk control's one-extra-error correction."""
    clf = model if isinstance(model, Classifier) else Classifier.load(model, runtime=runtime)
    limits = stored_thresholds(clf, target_precision, str(model), conservative)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise WardrobeError(f"{out}: --out must be a folder (it receives accepted.csv and review.csv)")
    acc_path, rev_path = out / "accepted.csv", out / "review.csv"
    existing = [p for p in (acc_path, rev_path) if p.exists()]
    if existing and not (resume or overwrite):
        raise WardrobeError(f"{existing[0]} exists: add --resume to continue that labelling or --overwrite to start again")
    files = [str(p) for p in expand_paths(inputs)]
    if not files:
        raise WardrobeError("no images to label")
    out.mkdir(parents=True, exist_ok=True)
    done = (_read_paths(acc_path) | _read_paths(rev_path)) if resume else set()
    todo = [p for p in files if p not in done]
    summary = LabelSummary(total=len(files), skipped=len(files) - len(todo), target=target_precision)
    if done:
        info(f"resuming: {summary.skipped} of {len(files)} photos already labelled in {out}")
    fa, wa = _open(acc_path, ACCEPTED_COLUMNS, resume)
    fr, wr = _open(rev_path, REVIEW_COLUMNS, resume)
    t0 = time.perf_counter()
    try:
        with progress(show_progress and len(todo) > batch_size) as bar:
            task = bar.add_task("label", total=len(todo), rate="")
            for rows in iter_rows(clf, todo, 3, batch_size, workers, unknown=True):
                for r in rows:
                    _route(r, limits, wa, wr, summary)
                fa.flush()
                fr.flush()
                el = time.perf_counter() - t0
                bar.update(task, advance=len(rows), rate=f"{(summary.accepted + summary.review) / el:.0f} photos/s")
    finally:
        fa.close()
        fr.close()
    summary.seconds = time.perf_counter() - t0
    order_for_review(rev_path)
    (out / "summary.json").write_text(json.dumps({
        "model": str(model if not isinstance(model, Classifier) else "<in memory>"), "target_precision": target_precision,
        "rule": "conservative" if conservative else "plain",
        "classes": clf.classes, "thresholds": limits, "unknown": clf.unknown, "photos": len(files), "accepted": len(_read_paths(acc_path)),
        "review": len(_read_paths(rev_path))}, indent=2))
    return summary


def _route(r: dict, limits: dict[str, float], wa, wr, summary: LabelSummary) -> None:
    if r["error"] is not None:
        wr.writerow([r["path"], "", "", "", "", "", "", "", "", "", r["error"]])
        summary.review += 1
        summary.failed += 1
        return
    limit = limits.get(r["label"], NEVER)
    unknown = r.get("unknown", False)
    if r["prob"] >= limit and not unknown:
        wa.writerow([r["path"], r["label"], f"{r['prob']:.6f}"])
        summary.accepted += 1
        return
    cells = []
    for i in range(1, 3):
        cells += [r["top_k"][i][0], f"{r['top_k'][i][1]:.6f}"] if i < len(r["top_k"]) else ["", ""]
    score = f"{r['unknown_score']:.6f}" if "unknown_score" in r else ""
    wr.writerow([r["path"], "unknown" if unknown else r["label"], f"{r['prob']:.6f}", r["label"], *cells,
                 f"{limit:.6f}", score, ""])
    summary.review += 1
    summary.unknown += unknown


def order_for_review(path: Path) -> None:
    """Rewrite review.csv with the least probable labels first (the likeliest mistakes: most found per
    minute of review), then the unknown photos, then unreadable ones; written beside it and renamed
    over it."""
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) <= 2:
        return
    header, body = rows[0], [r for r in rows[1:] if r]
    body.sort(key=lambda r: (r[-1] != "", r[1] == "unknown", float(r[2]) if r[2] else 0.0))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *body])
    os.replace(tmp, path)
