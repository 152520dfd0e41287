"""Would training on a cleaned train split help? The photos of the train split whose label a
cross-validated probe doubts (confident-learning rule of `wardrobe data audit --embeddings`, fitted
on the train split alone so that no validation label decides what is dropped) are left out; the
validation split is kept whole. Prints the probe's validation accuracy with and without them, and
writes a manifest (image,label,split) of the cleaned data for `wardrobe train MANIFEST --preset best`.
Run: WARDROBE_DATA_DIR=../shared/data .venv/bin/python bench/train_label_clean.py clothing-top10 \
         --out runs/clean10.csv [--below 1.0]"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from wardrobe.audit.label_errors import find_label_errors, out_of_fold_probs
from wardrobe.data import load_dataset
from wardrobe.evaluation.speed import cpu_model
from wardrobe.models import create_backbone
from wardrobe.models.levels import use_levels
from wardrobe.training.embeddings import extract_embeddings
from wardrobe.training.probe import DEFAULT_CS, fit_linear_probe, head_features


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--out", type=Path, required=True, help="the cleaned manifest to write")
    ap.add_argument("--below", type=float, default=1.0,
                    help="write the manifest without suspects whose probability of their own label is below this")
    ap.add_argument("--model", default="efficientnet_lite1")
    ap.add_argument("--levels", type=int, default=3)
    a = ap.parse_args()
    print(f"host: {cpu_model()}")
    ds = load_dataset(a.data)
    train, val = ds.split("train"), ds.split("validation")
    recs = train + val
    n = len(train)
    y = np.array([ds.classes.index(r.label) for r in recs])
    bb = create_backbone(a.model)
    if a.levels:
        use_levels(bb.model, a.levels)
    feats, errors, _ = extract_embeddings([r.path for r in recs], bb, show_progress=False)
    if errors:
        raise SystemExit(f"unreadable photos: {errors}")
    x = head_features(feats, "sqrt_linear")
    probs = out_of_fold_probs(x[:n], y[:n])
    suspect = find_label_errors(probs, y[:n])
    given = probs[np.arange(n), y[:n]]
    print(f"train {n} photos, out-of-fold probe accuracy {(probs.argmax(1) == y[:n]).mean():.4f}, "
          f"{int(suspect.sum())} suspects")
    by_class = {c: int(((y[:n] == k) & suspect).sum()) for k, c in enumerate(ds.classes)}
    print("suspects by given label: " + ", ".join(f"{c} {v}" for c, v in by_class.items() if v))
    print("| dropped (suspects with p(own label) below) | photos dropped | probe C | validation accuracy |")
    print("| --- | --- | --- | --- |")
    for below in (0.0, 0.05, 0.1, 0.2, 0.3, 1.0):
        keep = ~(suspect & (given < below))
        _, _, s = fit_linear_probe(x[:n][keep], y[:n][keep], x[n:], y[n:], len(ds.classes), cs=DEFAULT_CS)
        acc = next(h for h in s["search"] if h["C"] == s["C"])["val_accuracy"]
        print(f"| {below} | {int((~keep).sum())} | {s['C']} | {acc:.4f} |", flush=True)
    drop = suspect & (given < a.below)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["image", "label", "split"])
        for i, r in enumerate(recs):
            if i < n and drop[i]:
                continue
            wr.writerow([str(Path(r.path).resolve()), r.label, r.split])
    print(f"wrote {a.out}: {len(recs) - int(drop.sum())} photos ({int(drop.sum())} train suspects left out)")


if __name__ == "__main__":
    main()
