"""Does averaging a fine-tuned model with the probe help? The default probe's embeddings (Lite1,
three levels) of clothing-top10, its logistic regression at C 0.01, and each fine-tuned run's
validation probabilities, mixed with weight w on the probe (arithmetic and geometric means).
Run: WARDROBE_DATA_DIR=../shared/data .venv/bin/python bench/probe_ensemble.py runs/best [more runs]"""

from __future__ import annotations

import sys

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.inference import Classifier
from wardrobe.metrics import softmax
from wardrobe.models import create_backbone
from wardrobe.models.levels import use_levels
from wardrobe.training.embeddings import extract_embeddings
from wardrobe.training.probe import fit_linear_probe, head_features


def main(runs: list[str]) -> None:
    ds = load_dataset("clothing-top10")
    recs = ds.split("train") + ds.split("validation")
    n = len(ds.split("train"))
    y = np.array([ds.classes.index(r.label) for r in recs])
    bb = create_backbone("efficientnet_lite1")
    use_levels(bb.model, 3)
    x = head_features(extract_embeddings([r.path for r in recs], bb, show_progress=False)[0], "sqrt_linear")
    w, b, _ = fit_linear_probe(x[:n], y[:n], x[n:], y[n:], len(ds.classes), cs=(0.01,))
    probe, yv = softmax(x[n:] @ w.T + b), y[n:]
    print(f"probe alone: {(probe.argmax(1) == yv).mean():.4f}")
    for run in runs:
        clf = Classifier.load(run)
        if list(clf.classes) != ds.classes:
            raise SystemExit(f"{run}: trained on other classes")
        tuned = clf.predict_proba([r.path for r in recs[n:]], show_progress=False)[0]
        print(f"{run} alone: {(tuned.argmax(1) == yv).mean():.4f}")
        for a in (0.2, 0.3, 0.4, 0.5):
            arith = ((1 - a) * tuned + a * probe).argmax(1)
            geo = ((1 - a) * np.log(tuned + 1e-9) + a * np.log(probe + 1e-9)).argmax(1)
            print(f"  w {a}: arithmetic {(arith == yv).mean():.4f}, geometric {(geo == yv).mean():.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
