"""One self-contained report.html per evaluation or cross-validation: figures embedded as base64,
no external files, scripts or styles, so it can be mailed or archived as it is."""

from __future__ import annotations

import base64
import csv
import html
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wardrobe.data.images import ImageError, thumbnail_jpeg
from wardrobe.errors import WardrobeError
from wardrobe.evaluation.plots import plot_confusion
from wardrobe.plotting import pyplot, save

SECTIONS = ("summary", "per-class", "confusion-matrix", "training-curves", "class-histogram", "robustness",
            "calibration", "confidently-wrong")

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}img.fig{max-width:100%}.note{color:#666}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.card{width:150px;font-size:12px}.card img{width:150px}"""


def _esc(x) -> str:
    return html.escape(str(x))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return _esc(v)


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def img_tag(png: bytes | Path, alt: str, mime: str = "image/png", cls: str = "fig") -> str:
    data = png.read_bytes() if isinstance(png, Path) else png
    return f'<img class="{cls}" alt="{_esc(alt)}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'


def _fig_png(fig) -> bytes:
    return save(fig)


def histogram_png(counts: dict[str, int], title: str) -> bytes:
    plt = pyplot()
    names = list(counts)
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(names) + 2), 3.5))
    ax.bar(range(len(names)), [counts[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("photos")
    ax.set_title(title)
    fig.tight_layout()
    return _fig_png(fig)


def confusion_png(cm, classes: list[str], title: str) -> bytes:

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "cm.png"
        plot_confusion(np.asarray(cm), classes, p, title=title)
        return p.read_bytes()


def curves_html(run_dir: Path | None) -> str | None:
    """The run's training curves: its curves.png, else a plot of its epochs.csv."""
    if run_dir is None:
        return None
    if (run_dir / "curves.png").is_file():
        return img_tag(run_dir / "curves.png", "training curves")
    path = run_dir / "epochs.csv"
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.open()))
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [float(r.get("epoch", i)) for i, r in enumerate(rows)]
    for key in rows[0]:
        if key != "epoch" and ("acc" in key or "f1" in key or "loss" in key):
            try:
                ax.plot(x, [float(r[key]) for r in rows], label=key)
            except (TypeError, ValueError):
                continue
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return img_tag(_fig_png(fig), "training curves")


def _thumbnail(path: str | Path, side: int = 150) -> bytes | None:
    try:
        return thumbnail_jpeg(path, side)
    except ImageError:
        return None


def confidently_wrong(y_true: np.ndarray, probs: np.ndarray, limit: int = 24) -> list[int]:
    """Indices of wrong predictions, most confident first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:limit].tolist()


def gallery_html(paths: Sequence, y_true: np.ndarray, probs: np.ndarray, classes: list[str], limit: int = 24,
                 explain=None) -> str:
    """The most confident mistakes; with ``explain`` (photo path -> PNG bytes) each card also shows
    the Grad-CAM overlay of what the model looked at."""
    idx = confidently_wrong(y_true, probs, limit)
    if not idx:
        return "<p>No wrong predictions.</p>"
    cards = []
    for i in idx:
        p = int(probs[i].argmax())
        thumb = _thumbnail(paths[i])
        pic = img_tag(thumb, Path(paths[i]).name, "image/jpeg", cls="thumb") if thumb else "<p>(unreadable)</p>"
        if explain is not None and thumb:
            try:
                pic += img_tag(explain(paths[i]), f"Grad-CAM of {Path(paths[i]).name}", cls="thumb gradcam")
            except WardrobeError:
                pass  # the thumbnail alone: an explanation is a bonus, never a reason to fail a report
        cards.append(f'<div class="card">{pic}<br><b>true:</b> {_esc(classes[int(y_true[i])])}<br>'
                     f'<b>predicted:</b> {_esc(classes[p])} ({probs[i, p]:.3f})<br>'
                     f'<span class="note">{_esc(Path(paths[i]).name)}</span></div>')
    return f'<p>The {len(idx)} most confident mistakes.</p><div class="gallery">{"".join(cards)}</div>'


def per_class_rows(metrics: dict) -> list[list]:
    return [[name, m["precision"], m["recall"], m["f1"], m["ap"], m["support"]]
            for name, m in metrics["per_class"].items()]


def write_report(path: str | Path, title: str, metrics: dict, y_true: np.ndarray, probs: np.ndarray,
                 paths: Sequence, class_counts: dict[str, int] | None = None, run_dir: Path | None = None,
                 robustness: dict | None = None, calibration: dict | None = None,
                 reliability_png: Path | None = None, extra: Sequence[tuple[str, str, str]] = (),
                 summary_rows: Sequence[Sequence] | None = None, explain=None) -> Path:
    """``metrics`` as from compute_metrics; ``y_true``/``probs``/``paths`` of the same photos (for the
    gallery); ``extra``: (id, heading, html) sections placed after the summary (e.g. CV folds)."""
    classes = metrics["classes"]
    parts = [f"<h1>{_esc(title)}</h1>",
             f'<p class="note">written {time.strftime("%Y-%m-%d %H:%M:%S")} by wardrobe</p>']

    def section(sid: str, heading: str, body: str) -> None:
        parts.append(f'<section id="{sid}"><h2>{_esc(heading)}</h2>{body}</section>')

    rows = summary_rows or [[k, metrics[k]] for k in ("accuracy", "f1_macro", "f1_weighted", "map_macro",
                                                       "top3_accuracy", "n_images") if k in metrics]
    section("summary", "Metrics", table(["metric", "value"], rows))
    for sid, heading, body in extra:
        section(sid, heading, body)
    section("per-class", "Per class", table(["class", "precision", "recall", "F1", "AP", "support"],
                                            per_class_rows(metrics)))
    section("confusion-matrix", "Confusion matrix", img_tag(confusion_png(metrics["confusion_matrix"], classes, ""),
                                                            "confusion matrix"))
    curves = curves_html(run_dir)
    section("training-curves", "Training curves",
            curves or '<p class="note">Not known: the run folder has no epochs.csv (a probe has no epochs).</p>')
    counts = class_counts or {c: m["support"] for c, m in metrics["per_class"].items()}
    section("class-histogram", "Photos per class", img_tag(histogram_png(counts, "photos per class"), "class histogram"))
    if robustness:
        clean = robustness["clean"]
        rows = [["clean", clean["accuracy"], clean["f1_macro"], 0.0, 0.0]] + [
            [name, r["accuracy"], r["f1_macro"], r["accuracy_drop"], r["f1_macro_drop"]]
            for name, r in robustness["corruptions"].items()]
        body = table(["corruption", "accuracy", "macro-F1", "accuracy drop", "macro-F1 drop"], rows)
    else:
        body = '<p class="note">Not computed (run evaluate with --robustness).</p>'
    section("robustness", "Robustness", body)
    if calibration:
        rows = [["ECE (15 bins)", calibration["ece"]], ["temperature", calibration.get("temperature", 1.0)]]
        if "ece_after" in calibration:
            rows += [["fitted temperature", calibration["fitted_temperature"]],
                     ["ECE after temperature scaling", calibration["ece_after"]]]
        body = table(["calibration", "value"], rows)
        if reliability_png is not None and Path(reliability_png).is_file():
            body += img_tag(Path(reliability_png), "reliability diagram")
    else:
        body = '<p class="note">Not computed.</p>'
    section("calibration", "Calibration", body)
    section("confidently-wrong", "Most confidently wrong photos", gallery_html(paths, np.asarray(y_true),
                                                                               np.asarray(probs), classes,
                                                                               explain=explain))
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
           f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path
