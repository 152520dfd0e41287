"""Does a nearest-neighbour vote on a fold model's own embeddings help the rare classes of a
cross-validation? Each fold model of a finished CV keeps its training photos' embeddings (the
unknown-photo bank, in training order). Its validation photos are embedded again, each gets a
soft vote of its k nearest training photos (cosine, weights exp(sim / T)), optionally divided by
class frequency^alpha, and the vote is mixed into the CV's out-of-fold probabilities with weight w.
w, alpha and T are chosen cross-fitted (on the other folds, for macro-F1) as well as shown per cell.

Run: .venv/bin/python bench/cv_knn_blend.py CV_DIR   (e.g. runs/cv17-best17)
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from sklearn.metrics import f1_score

from wardrobe.data.loader import iter_pixel_batches
from wardrobe.evaluation.cv import open_cv_photos
from wardrobe.inference import Classifier
from wardrobe.unknown import normalise

KS = (10, 30)
TEMPS = (0.05, 0.1)
ALPHAS = (0.0, 0.5, 1.0)
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)


def embed(clf: Classifier, paths: list) -> np.ndarray:
    out = None
    for idx, pixels, bad in iter_pixel_batches(paths, clf.preprocess, 32, None):
        if bad:
            raise SystemExit(f"unreadable photos: {bad}")
        x = torch.from_numpy(np.ascontiguousarray(clf.preprocess.normalize_array(pixels.numpy())))
        _, emb = clf.runner(x)
        emb = np.asarray(emb, dtype=np.float32)
        out = np.zeros((len(paths), emb.shape[1]), np.float32) if out is None else out
        out[idx.numpy()] = emb
    return normalise(out)


def votes(sims: np.ndarray, ytr: np.ndarray, n_cls: int, k_nn: int, temp: float, alpha: float) -> np.ndarray:
    top = np.argpartition(-sims, k_nn, axis=1)[:, :k_nn]
    w = np.exp(np.take_along_axis(sims, top, 1) / temp)
    v = np.zeros((len(sims), n_cls))
    np.add.at(v, (np.repeat(np.arange(len(sims)), k_nn), ytr[top].ravel()), w.ravel())
    v /= np.maximum(np.bincount(ytr, minlength=n_cls), 1) ** alpha
    return v / v.sum(1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cv_dir")
    args = ap.parse_args()
    cv, y, oof, paths, folds = open_cv_photos(args.cv_dir)
    n_cls = oof.shape[1]
    sims_per_fold = []
    for i, (tr, va) in enumerate(folds, 1):
        clf = Classifier.load(f"{args.cv_dir}/fold-{i}")
        bank = np.asarray(clf.bank, dtype=np.float32)
        if len(bank) != len(tr):
            raise SystemExit(f"fold {i}: bank of {len(bank)} photos, {len(tr)} training photos")
        check = embed(clf, [paths[j] for j in tr[:16]])
        agree = float(np.mean(np.sum(check * bank[:16], 1)))
        print(f"fold {i}: bank rows match the training photos in order (mean cosine {agree:.4f})", flush=True)
        if agree < 0.99:
            raise SystemExit("the bank is not in training order")
        sims_per_fold.append(embed(clf, [paths[j] for j in va]) @ bank.T)

    def mixed(cfg, fold):
        (k_nn, temp, alpha, w), (tr, va) = cfg, folds[fold]
        v = votes(sims_per_fold[fold], y[tr], n_cls, k_nn, temp, alpha)
        return (1 - w) * oof[va] + w * v

    def score(cfg, fold):
        pred = mixed(cfg, fold).argmax(1)
        va = folds[fold][1]
        return (pred == y[va]).mean(), f1_score(y[va], pred, average="macro", labels=np.arange(n_cls), zero_division=0)

    grid = list(itertools.product(KS, TEMPS, ALPHAS, WEIGHTS))
    table = {cfg: [score(cfg, f) for f in range(len(folds))] for cfg in grid}
    print("k  T     alpha  w    accuracy  macro-F1 (fold means)")
    for cfg, rows in table.items():
        a, f = np.mean(rows, axis=0)
        print(f"{cfg[0]:<3}{cfg[1]:<6}{cfg[2]:<7}{cfg[3]:<5}{a:.4f}    {f:.4f}")
    cross = []
    for f in range(len(folds)):
        others = [g for g in range(len(folds)) if g != f]
        best = max(grid, key=lambda c: np.mean([table[c][g][1] for g in others]))
        cross.append(table[best][f])
        print(f"fold {f + 1}: chosen on the other folds {best}: {table[best][f][0]:.4f} / {table[best][f][1]:.4f}")
    a, f = np.mean(cross, axis=0)
    base = np.mean(table[(KS[0], TEMPS[0], ALPHAS[0], 0.0)], axis=0)
    print(f"cross-fitted: accuracy {a:.4f}, macro-F1 {f:.4f} (the CV as it is: {base[0]:.4f} / {base[1]:.4f})")


if __name__ == "__main__":
    main()
