"""Regrade a network run's validation figures from its saved scores (validation_graded.npz)
under another rule, without training again: which model the run keeps (``--model average``: the
weight average of --average-from, fixed by rule, so only the tau is cross-fitted; ``epochs``: the
best epoch, each half of the photos graded with the epoch and tau the other half picks; ``both``:
the average and the epochs, the average first so a tie goes to it; ``half``: the mean of the second
half's epoch scores, a stand-in for the weight average of --average-from 0.5 on runs trained
without it, which scores as the averaged weights do, session 23) and when logits are adjusted
(``--adjust-min-ratio R``: only when the largest training class has R times the smallest's photos).
Prints the figures and each half's choice, and the runs' mean (a CV's folds); the run folder is not changed. The training counts the
tau search needs are the dataset's class counts less the validation photos' (runs with a test
split are refused).

Run: .venv/bin/python bench/regrade_run.py RUN [RUN ...] [--model average|epochs|both|half] [--adjust-min-ratio R]
     (e.g. runs/best-avg --model epochs --adjust-min-ratio 0: how the preset of session 22 graded it)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import wardrobe
from wardrobe.training.datamodule import imbalance_of
from wardrobe.training.posthoc import cross_fitted_run, macro_f1, taus_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--model", choices=("average", "epochs", "both", "half"), default="average")
    ap.add_argument("--adjust-min-ratio", type=float, default=10.0)
    args = ap.parse_args()
    figures = []
    for run in args.runs:
        config = json.loads((run / "config.json").read_text())
        classes = json.loads((run / "metrics.json").read_text())["classes"]
        if config.get("test_ratio"):
            raise SystemExit(f"{run}: has a test split; the training counts cannot be told from the dataset")
        with np.load(run / "validation_graded.npz", allow_pickle=False) as f:
            y, epochs = f["labels"], list(f["epoch_probs"].astype(np.float32))
            average = [f["average_probs"].astype(np.float32)] if "average_probs" in f.files else []
        if args.model == "half":
            average = [np.mean(epochs[len(epochs) // 2:], axis=0)]  # epochs after half of them, as --average-from 0.5
        elif args.model != "epochs" and not average:
            raise SystemExit(f"{run}: trained without --average-from; grade it with --model epochs")
        ds = wardrobe.load_dataset(config["data"])
        counts = np.array([ds.class_counts()[c] for c in classes]) - np.bincount(y, minlength=len(classes))
        fit = config["fit"]
        adjust = fit["logit_adjust"] and imbalance_of(counts) >= args.adjust_min_ratio
        taus = taus_for(fit["loss"], config.get("sampler", "none")) if adjust else (0.0,)
        candidates = {"average": average, "half": average, "epochs": epochs, "both": average + epochs}[args.model]
        graded, chosen = cross_fitted_run(candidates, y, counts, taus)
        first = 0 if args.model == "epochs" else 1  # the index of epoch 1 among the candidates
        names = ["average" if e < first else f"epoch {e + 1 - first}" for e, _ in chosen]
        pred = graded.argmax(1)
        acc, f1 = (pred == y).mean(), macro_f1(y, pred, len(classes))
        figures.append((acc, f1))
        print(f"{run} ({args.model}, logits {'adjusted' if adjust else 'not adjusted'}): accuracy "
              f"{acc:.4f}, macro-F1 {f1:.4f} "
              f"({'; '.join(f'{n} tau {t}' for n, (_, t) in zip(names, chosen))})")
    if len(figures) > 1:
        acc, f1 = np.mean(figures, axis=0)
        print(f"mean of {len(figures)} runs: accuracy {acc:.4f}, macro-F1 {f1:.4f}")


if __name__ == "__main__":
    main()
