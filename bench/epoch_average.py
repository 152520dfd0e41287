"""Would averaging the last epochs help? A cheap stand-in for a weight average (SWA): each epoch's
validation scores of a network run, and the mean of the last K epochs' scores, as accuracy and
macro-F1 before any logit adjustment; then each class's F1 and validation count, for the last
epoch and for the mean of all epochs (one photo of a rare class moves macro-F1 by a lot). Reads
validation_graded.npz ("epoch_probs"); runs from before that array read the scores kept in
checkpoints/last.ckpt (plain tensors: loaded with weights_only=True, nothing is unpickled). A run
trained with --average-from also prints its weight average's scores, to set against the mean of
the same epochs' scores.

Run: .venv/bin/python bench/epoch_average.py RUN [RUN ...]   (e.g. runs/cv17-e10/fold-1)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from wardrobe.training.posthoc import macro_f1


def epoch_scores(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(epochs x photos x classes probabilities, labels, the weight average's probabilities or
    None) of a run's validation photos."""
    with np.load(run / "validation_graded.npz", allow_pickle=False) as f:
        labels = f["labels"]
        average = f["average_probs"].astype(np.float32) if "average_probs" in f.files else None
        if "epoch_probs" in f.files:
            return f["epoch_probs"].astype(np.float32), labels, average
    import torch

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    state = ckpt["callbacks"].get("ValidationScores", {}).get("epochs", [])
    if not state:  # trained over several processes, or before per-epoch scores were kept
        raise SystemExit(f"{run}: the run kept no per-epoch validation scores")
    return np.stack([e.float().numpy() for e in state]), labels, average


def _line(probs: np.ndarray, y: np.ndarray) -> str:
    pred = probs.argmax(1)
    return f"accuracy {(pred == y).mean():.4f}, macro-F1 {macro_f1(y, pred, probs.shape[1]):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path, nargs="+")
    args = ap.parse_args()
    for run in args.runs:
        probs, y, average = epoch_scores(run)
        n_classes = probs.shape[2]
        print(f"{run}: {len(probs)} epochs, {len(y)} validation photos")
        for e, p in enumerate(probs, 1):
            print(f"  epoch {e:2d}: {_line(p, y)}")
        for k in range(2, len(probs) + 1):
            print(f"  mean of the last {k:2d} epochs: {_line(probs[-k:].mean(0), y)}")
        if average is not None:  # a run with --average-from: its averaged weights' own scores
            epochs = json.loads((run / "config.json").read_text())["weight_average"]["epochs"]
            print(f"  weight average of epochs {epochs[0]}-{epochs[-1]}: {_line(average, y)}")
        classes = json.loads((run / "metrics.json").read_text())["classes"]
        last, mean = (f1_score(y, p.argmax(1), labels=range(n_classes), average=None, zero_division=0)
                      for p in (probs[-1], probs.mean(0)))
        counts = np.bincount(y, minlength=n_classes)
        print("  F1 per class (validation photos): last epoch / mean of all epochs")
        for name, n, a, b in sorted(zip(classes, counts, last, mean), key=lambda r: r[1]):
            print(f"    {name:<12} {n:4d}  {a:.2f} / {b:.2f}")


if __name__ == "__main__":
    main()
