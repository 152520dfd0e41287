"""Trusted labels measured on photos the thresholds were not fitted on: the validation photos are
cut into 5 folds; a temperature and the thresholds are fitted on 4 (wardrobe's rules, plain and conservative,
wardrobe.selection.fit_thresholds)
and the accepted photos of the 5th are scored; repeated with 20 shuffles. Reports the accepted
photos' precision and the coverage (share auto-labelled) per target precision, pooled over folds.

The shipped model fits its thresholds on all its validation photos (5/4 as many), so these figures
are slightly pessimistic for it.

Run: .venv/bin/python bench/trusted_labels.py RUN [RUN ...] [--data clothing-top10]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from wardrobe.data import load_dataset
from wardrobe.evaluation.speed import cpu_model
from wardrobe.inference.classifier import Classifier
from wardrobe.metrics import fit_temperature, softmax
from wardrobe.selection import accept, fit_thresholds


def cross_fitted(probs: np.ndarray, y: np.ndarray, classes: list[str], target: float, repeats: int = 20,
                 conservative: bool = False) -> dict:
    right = probs.argmax(1) == y
    logp = np.log(np.clip(probs, 1e-12, None))
    accepted = correct = total = 0
    for seed in range(repeats):
        for fit, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(probs, y):
            # as a run does: a temperature, then the thresholds, both fitted on the fitting photos only
            p = softmax(logp, fit_temperature(logp[fit], y[fit]))
            sel = fit_thresholds(p[fit], y[fit], classes, targets=(target,))
            rule = "conservative" if conservative else "targets"
            ok = accept(p[held], classes, sel[rule][f"{target:g}"]["per_class"])
            accepted += int(ok.sum())
            correct += int(right[held][ok].sum())
            total += len(held)
    return {"precision": correct / accepted if accepted else float("nan"), "coverage": accepted / total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", default="clothing-top10")
    args = ap.parse_args()
    if not os.environ.get("WARDROBE_DATA_DIR") and Path("../shared/data").is_dir():
        os.environ["WARDROBE_DATA_DIR"] = str(Path("../shared/data").resolve())
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}")
    ds = load_dataset(args.data)
    val = ds.split("validation")
    for run in args.runs:
        clf = Classifier.load(run)
        index = {c: i for i, c in enumerate(clf.classes)}
        probs, errors = clf.predict_proba([r.path for r in val], show_progress=False)
        keep = np.array([i not in errors for i in range(len(val))])
        y = np.array([index[r.label] for r in val])[keep]
        probs = probs[keep]
        print(f"{run} ({clf.meta.get('mode')}, {clf.meta.get('backbone')}): validation accuracy "
              f"{(probs.argmax(1) == y).mean():.4f} on {len(y)} photos")
        for target in (0.95, 0.98, 0.99):
            for conservative in (False, True):
                r = cross_fitted(probs, y, clf.classes, target, conservative=conservative)
                print(f"  target {target:.2f} {'conservative' if conservative else 'plain':12s}: accepted precision "
                      f"{r['precision']:.4f}, coverage {r['coverage']:.4f}")


if __name__ == "__main__":
    main()
