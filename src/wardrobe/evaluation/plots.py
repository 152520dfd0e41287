"""Figures and tables written next to metrics.json."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from wardrobe.plotting import pyplot, save


def write_confusion_csv(cm: np.ndarray, classes: list[str], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, np.asarray(cm)):
            w.writerow([name, *map(int, row)])


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    plt = pyplot()

    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    # One panel per row, each as wide as the page, with type that stays readable when report.html
    # scales the figure to its column: at 17 classes and more, side by side panels shrank to 5 px text.
    side = max(6.0, 0.5 * k + 2.5)
    label_size = 11 if k <= 20 else 9
    cell_size = 10 if k <= 12 else (9 if k <= 20 else 7)
    fig, axes = plt.subplots(2, 1, figsize=(side + 1.5, 2 * side))
    for ax, data, name, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], norm, "row-normalised (recall)", "{:.2f}")):
        im = ax.imshow(data, cmap="Blues", vmin=0)
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=label_size)
        ax.set_yticks(range(k), classes, fontsize=label_size)
        ax.set_xlabel("predicted", fontsize=label_size + 1)
        ax.set_ylabel("true", fontsize=label_size + 1)
        ax.set_title(f"{title} {name}".strip(), fontsize=label_size + 2)
        hi = data.max() or 1
        for i in range(k):
            for j in range(k):
                if data[i, j]:
                    text = fmt.format(data[i, j]) if name == "counts" else f"{data[i, j]:.2f}".lstrip("0")
                    ax.text(j, i, text, ha="center", va="center", fontsize=cell_size,
                            color="white" if data[i, j] > hi / 2 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    save(fig, path, dpi=90)
