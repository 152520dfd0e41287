"""Figures and tables written next to metrics.json."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def write_confusion_csv(cm: np.ndarray, classes: list[str], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, np.asarray(cm)):
            w.writerow([name, *map(int, row)])


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    import matplotlib  # heavy: matplotlib, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib, only when plotting

    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    size = max(6.0, 0.55 * k + 3)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for ax, data, name, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], norm, "row-normalised (recall)", "{:.2f}")):
        im = ax.imshow(data, cmap="Blues", vmin=0)
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} {name}".strip())
        hi = data.max() or 1
        for i in range(k):
            for j in range(k):
                if data[i, j]:
                    ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if data[i, j] > hi / 2 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
