"""Unknown photos: how well each score separates photos of none of a model's classes from its
known-class validation photos. Two unknown sets: non-clothing photos (the sample photos bundled in
the scikit-image wheel: a cat, a rocket, an astronaut, bricks...) and clothing of classes the model
never saw (clothing-17's classes outside clothing-top10, for a top-10 model).

Scores (higher: more unknown): 1 - max probability, energy (-logsumexp of the logits), Mahalanobis
distance (class means, shared covariance, on the embeddings), and the k-NN cosine distance to the
training embeddings (k = 1, 5, 10) that wardrobe ships. Thresholds are fitted on the known validation
photos at 5 % false-unknown; "detected" is the share of unknown photos above it.

Run: .venv/bin/python bench/unknown.py RUN [--non-clothing DIR]
(without --non-clothing it unpacks the photos of the scikit-image wheel, fetched with pip download)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.evaluation.evaluate import _norm
from wardrobe.evaluation.speed import cpu_model
from wardrobe.inference.classifier import Classifier
from wardrobe.inference.predict import expand_paths
from wardrobe.unknown import energy, knn_scores, normalise, unknown_rates


def skimage_photos() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="skimage-photos-"))
    subprocess.run([sys.executable, "-m", "pip", "download", "scikit-image", "--no-deps", "-q", "-d", str(folder)],
                   check=True)
    wheel = next(folder.glob("scikit_image-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("skimage/data/") and name.endswith((".png", ".jpg")):
                (folder / Path(name).name).write_bytes(z.read(name))
    return folder


def outputs(clf: Classifier, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(logits up to a per-photo constant, embeddings)."""
    from wardrobe.data.loader import iter_pixel_batches

    logits, embs = [], []
    for idx, pixels, bad in iter_pixel_batches(paths, clf.preprocess, 32, None):
        if len(idx):
            x = clf.preprocess.normalize_array(pixels.numpy())
            import torch
            lo, em = clf.runner(torch.from_numpy(np.ascontiguousarray(x)))
            logits.append(lo)
            embs.append(em)
    return np.concatenate(logits), np.concatenate(embs)


def mahalanobis(train_emb, train_y, emb):
    classes = np.unique(train_y)
    means = np.stack([train_emb[train_y == c].mean(0) for c in classes])
    centred = train_emb - means[np.searchsorted(classes, train_y)]
    cov = np.cov(centred, rowvar=False) + 1e-3 * np.eye(train_emb.shape[1])
    prec = np.linalg.inv(cov)
    d = [np.einsum("ij,jk,ik->i", emb - m, prec, emb - m) for m in means]
    return np.min(np.stack(d, 1), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--non-clothing", type=Path, default=None)
    args = ap.parse_args()
    if not os.environ.get("WARDROBE_DATA_DIR") and Path("../shared/data").is_dir():
        os.environ["WARDROBE_DATA_DIR"] = str(Path("../shared/data").resolve())
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}")
    clf = Classifier.load(args.run)
    if clf.bank is None:
        raise SystemExit(f"{args.run}: no unknown detector in this model (retrain it)")
    top10 = load_dataset("clothing-top10")
    index = {c: i for i, c in enumerate(clf.classes)}
    known_val = [str(r.path) for r in top10.split("validation")]
    train = top10.split("train")
    train_paths, train_y = [str(r.path) for r in train], np.array([index[r.label] for r in train])
    norm = {_norm(c) for c in clf.classes}
    in_top10 = {str(r.path) for r in top10.records}
    other = [str(r.path) for r in load_dataset("clothing-17").records
             if _norm(r.label) not in norm and str(r.path) not in in_top10]
    folder = args.non_clothing or skimage_photos()
    non_clothing = [str(p) for p in expand_paths([folder])]
    print(f"known validation {len(known_val)}, non-clothing {len(non_clothing)} ({folder}), "
          f"unseen clothing classes {len(other)}")
    lo_tr, em_tr = outputs(clf, train_paths)
    sets = {name: outputs(clf, paths) for name, paths in
            (("known", known_val), ("non-clothing", non_clothing), ("unseen clothing", other))}

    def scores(kind, lo, em):
        if kind == "1 - max probability":
            p = np.exp(lo - lo.max(1, keepdims=True))
            return 1 - (p / p.sum(1, keepdims=True)).max(1)
        if kind == "energy":
            return energy(lo)
        if kind == "Mahalanobis":
            return mahalanobis(normalise(em_tr), train_y, normalise(em))
        k = int(kind.split("=")[1])
        return knn_scores(clf.bank, em, k)

    print(f"{'score':24s} {'non-clothing AUROC':>18s} {'detected':>9s} {'unseen AUROC':>13s} {'detected':>9s}")
    for kind in ("1 - max probability", "energy", "Mahalanobis", "k-NN k=1", "k-NN k=5", "k-NN k=10"):
        known = scores(kind, *sets["known"])
        threshold = float(np.quantile(known, 0.95, method="higher"))
        a = unknown_rates(known, scores(kind, *sets["non-clothing"]), threshold)
        b = unknown_rates(known, scores(kind, *sets["unseen clothing"]), threshold)
        print(f"{kind:24s} {a['auroc']:18.4f} {a['detected']:9.3f} {b['auroc']:13.4f} {b['detected']:9.3f}")
    print(f"shipped detector: {clf.unknown}")


if __name__ == "__main__":
    main()
