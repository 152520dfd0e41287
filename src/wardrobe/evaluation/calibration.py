"""Calibration: expected calibration error, reliability diagram, temperature scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wardrobe.models.modelfile import update_meta
from wardrobe.plotting import pyplot, save

ECE_BINS = 15


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Equal-width confidence bins over (0, 1]: count, mean confidence and accuracy of the top label."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=int)
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin b holds confidences in (edges[b], edges[b+1]]; a confidence of exactly 0 joins the first bin.
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n,
                    "confidence": float(conf[m].mean()) if n else None,
                    "accuracy": float(correct[m].mean()) if n else None})
    return out


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of |bin| / N * |accuracy(bin) - mean confidence(bin)|."""
    table = reliability_bins(probs, y_true, bins)
    n = sum(b["count"] for b in table)
    if n == 0:
        raise ValueError("no predictions")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in table if b["count"]))


def calibration_summary(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> dict:
    return {"ece": expected_calibration_error(probs, y_true, bins), "bins": bins,
            "reliability": reliability_bins(probs, y_true, bins)}


def plot_reliability(probs: np.ndarray, y_true: np.ndarray, path: Path, title: str = "",
                     bins: int = ECE_BINS, after: np.ndarray | None = None) -> Path:
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration, and the
    share of photos per bin; ``after``: the same photos' probabilities after temperature scaling."""
    plt = pyplot()

    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    width = 1.0 / bins
    series = [("model", probs, "tab:blue")] + ([("temperature-scaled", after, "tab:orange")] if after is not None else [])
    for k, (name, p, colour) in enumerate(series):
        table = reliability_bins(p, y_true, bins)
        centres = np.array([(b["lo"] + b["hi"]) / 2 for b in table])
        acc = np.array([b["accuracy"] if b["count"] else 0.0 for b in table])
        shift = (k - (len(series) - 1) / 2) * width / len(series)
        ax.bar(centres + shift, acc, width=width / len(series), color=colour, alpha=0.8, edgecolor="black",
               linewidth=0.4, label=f"{name} (ECE {expected_calibration_error(p, y_true, bins):.3f})")
        axh.bar(centres + shift, [b["count"] for b in table], width=width / len(series), color=colour, alpha=0.8)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title or "reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    axh.set_xlabel("confidence (top probability)")
    axh.set_ylabel("photos")
    fig.tight_layout()
    save(fig, path, dpi=110)
    return path


def store_temperature(model_path: str | Path, temperature: float, fitted_on: dict | None = None) -> Path:
    """Rewrite the model file with this temperature in its description (weights untouched)."""
    changes = {"temperature": float(temperature)}
    if fitted_on:
        changes["calibration"] = fitted_on
    return update_meta(model_path, changes)
