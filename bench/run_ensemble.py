"""Do trained runs make different mistakes? Scores each run on a dataset's validation photos, then
every subset of two or more runs by averaging their probabilities, and counts the photos every run
gets wrong (what no average of them can fix).

Run: .venv/bin/python bench/run_ensemble.py DATA RUN RUN [RUN ...]
     (e.g. clothing-top10 runs/best-sq272 runs/best-sq272-s1 runs/best-sq272-s2 runs/best-sq272-s3)
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.inference import Classifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--split", default="validation")
    args = ap.parse_args()
    ds = load_dataset(args.data)
    recs = ds.split(args.split)
    y = np.array([ds.classes.index(r.label) for r in recs])
    probs = {}
    for run in args.runs:
        clf = Classifier.load(run)
        if list(clf.meta["classes"]) != ds.classes:
            raise SystemExit(f"{run} was trained on other classes than {args.data}")
        probs[run] = clf.predict_proba([r.path for r in recs], show_progress=False)[0]
        print(f"{run}: {(probs[run].argmax(1) == y).mean():.4f}", flush=True)
    for r in range(2, len(args.runs) + 1):
        for subset in itertools.combinations(args.runs, r):
            acc = (sum(probs[k] for k in subset).argmax(1) == y).mean()
            print(f"average of {' + '.join(subset)}: {acc:.4f}")
    wrong = np.array([p.argmax(1) != y for p in probs.values()])
    print(f"{len(recs)} photos: {wrong.all(0).sum()} wrong in every run, {wrong.any(0).sum()} wrong in at least one")


if __name__ == "__main__":
    main()
