"""Does a second head, fitted after fine-tuning on the network's own embeddings of its training
photos and mixed into the trained head (training/head_refit.py, `--head-refit W`), help? Each fold
model of a finished CV, or each finished run, trained without it, embeds its training and
validation photos once; the second head is then fitted and mixed exactly as training does, for
each weight W and regularisation C, and graded on the validation photos. For a CV the cell with
the best macro-F1 on the other folds is also graded on each fold (cross-fitted).

Run: .venv/bin/python bench/cv_head_refit.py CV_DIR          (e.g. runs/cv17-avg995; 1.5 min a fold)
     .venv/bin/python bench/cv_head_refit.py --runs RUN [RUN ...]   (runs with a validation split)
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

import wardrobe
from wardrobe.data.loader import iter_pixel_batches
from wardrobe.evaluation.cv import open_cv_photos
from wardrobe.inference import Classifier
from wardrobe.models.heads import LogitsAndEmbedding
from wardrobe.models.runtime import make_runner
from wardrobe.training.head_refit import REFIT_C, refit_head

CS = (REFIT_C, 0.1)
WEIGHTS = (0.0, 0.25, 0.5, 1.0)


def embeddings(clf: Classifier, paths: list, key: dict) -> np.ndarray:
    """The pooled embeddings the head sees, unnormalised (as training hands them to the refit)."""
    runner = make_runner(LogitsAndEmbedding(clf.model), clf.preprocess.hw, key, outputs=2)
    out = None
    for idx, pixels, bad in iter_pixel_batches(paths, clf.preprocess, 64, None):
        if bad:
            raise SystemExit(f"unreadable photos: {bad}")
        _, emb = runner(torch.from_numpy(np.ascontiguousarray(clf.preprocess.normalize_array(pixels.numpy()))))
        out = np.zeros((len(paths), emb.shape[1]), np.float32) if out is None else out
        out[idx.numpy()] = emb
    return out


def grade(clf: Classifier, tr_paths: list, y_tr: np.ndarray, va_paths: list, y_va: np.ndarray, key: dict) -> dict:
    """{(C, W): (accuracy, macro-F1)} on the validation photos."""
    emb = embeddings(clf, [*tr_paths, *va_paths], key)
    e_tr, e_va = emb[:len(tr_paths)], emb[len(tr_paths):]
    out = {}
    for c, w in itertools.product(CS, WEIGHTS):
        net = copy.deepcopy(clf.model)
        if w:
            refit_head(net, e_tr, y_tr, w, c)
        with torch.no_grad():
            pred = net.get_classifier()(torch.from_numpy(e_va)).argmax(1).numpy()
        labels = np.arange(len(clf.classes))
        out[c, w] = ((pred == y_va).mean(), f1_score(y_va, pred, average="macro", labels=labels, zero_division=0))
    return out


def run_split(run: Path) -> tuple[list, np.ndarray, list, np.ndarray]:
    """A finished run's training and validation photos and labels."""
    config = json.loads((run / "config.json").read_text())
    if config.get("test_ratio"):
        raise SystemExit(f"{run}: has a test split by ratio; its training photos cannot be told from the dataset")
    classes = json.loads((run / "metrics.json").read_text())["classes"]
    with np.load(run / "validation_graded.npz", allow_pickle=False) as f:
        va_paths, y_va = [str(p) for p in f["paths"]], f["labels"]
    held = set(va_paths)
    train = [r for r in wardrobe.load_dataset(config["data"]).records if str(r.path) not in held and r.split != "test"]
    return [str(r.path) for r in train], np.array([classes.index(r.label) for r in train]), va_paths, y_va


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--runs", action="store_true", help="the folders are runs, not one CV")
    args = ap.parse_args()
    table = {}  # (C, W) -> [(accuracy, macro-F1) per fold or run]
    if args.runs:
        for run in args.dirs:
            tr, y_tr, va, y_va = run_split(run)
            for cell, figures in grade(Classifier.load(run), tr, y_tr, va, y_va, {"head_refit": str(run)}).items():
                table.setdefault(cell, []).append(figures)
            print(f"{run}: " + ", ".join(f"C {c} W {w}: {rows[-1][0]:.4f}" for (c, w), rows in table.items()),
                  flush=True)
    else:
        _, y, _, paths, folds = open_cv_photos(args.dirs[0])
        for i, (tr, va) in enumerate(folds):
            clf = Classifier.load(args.dirs[0] / f"fold-{i + 1}")
            cells = grade(clf, [paths[j] for j in tr], y[tr], [paths[j] for j in va], y[va],
                          {"head_refit": str(args.dirs[0]), "fold": i})
            for cell, figures in cells.items():
                table.setdefault(cell, []).append(figures)
            print(f"fold {i + 1}: " + ", ".join(f"C {c} W {w}: {a:.4f} / {f:.4f}" for (c, w), (a, f) in cells.items()),
                  flush=True)
    print("C     W     accuracy  macro-F1 (means)")
    for (c, w), rows in table.items():
        a, f = np.mean(rows, axis=0)
        print(f"{c:<6}{w:<6}{a:.4f}    {f:.4f}")
    if args.runs:
        return
    cross = []
    for f in range(len(table[CS[0], 0.0])):
        best = max(table, key=lambda cell: np.mean([r[1] for g, r in enumerate(table[cell]) if g != f]))
        cross.append(table[best][f])
        print(f"fold {f + 1}: chosen on the other folds C {best[0]} W {best[1]}: "
              f"{table[best][f][0]:.4f} / {table[best][f][1]:.4f}")
    a, f = np.mean(cross, axis=0)
    base = np.mean(table[CS[0], 0.0], axis=0)
    print(f"cross-fitted: accuracy {a:.4f}, macro-F1 {f:.4f} "
          f"(the fold models as they are: {base[0]:.4f} / {base[1]:.4f})")


if __name__ == "__main__":
    main()
