"""The probe's embedding: the final pooled embedding alone, or with the pooled outputs of the last
1, 2 or 3 block stages (models/levels.py), for Lite0 and Lite1 on clothing-top10. Scored two ways:
5-fold stratified CV over the train and validation photos together (steadier: 3,409 photos instead
of 341), and the fixed validation split the README reports. C is fixed per row, so the rows compare
embeddings, not C searches.
Run: WARDROBE_DATA_DIR=../shared/data .venv/bin/python bench/probe_levels.py"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold

from wardrobe.data import load_dataset
from wardrobe.evaluation.speed import cpu_model
from wardrobe.metrics import softmax
from wardrobe.models import create_backbone
from wardrobe.models.levels import stage_channels, use_levels
from wardrobe.training.embeddings import extract_embeddings
from wardrobe.training.probe import fit_linear_probe, head_features


def scores(x: np.ndarray, y: np.ndarray, n_train: int, classes: int, c: float) -> tuple[float, float, float]:
    """(CV accuracy, CV log-loss, validation-split accuracy)."""
    accs, losses = [], []
    for tr, va in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        w, b, _ = fit_linear_probe(x[tr], y[tr], x[va], y[va], classes, cs=(c,))
        p = softmax(x[va] @ w.T + b)
        accs.append(float((p.argmax(1) == y[va]).mean()))
        losses.append(float(-np.log(np.clip(p[np.arange(len(va)), y[va]], 1e-12, None)).mean()))
    _, _, s = fit_linear_probe(x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes, cs=(c,))
    return float(np.mean(accs)), float(np.mean(losses)), s["search"][0]["val_accuracy"]


def main() -> None:
    print(f"host: {cpu_model()}")
    ds = load_dataset("clothing-top10")
    recs = ds.split("train") + ds.split("validation")
    n_train = len(ds.split("train"))
    y = np.array([ds.classes.index(r.label) for r in recs])
    print("| backbone | levels | C | CV accuracy | CV log-loss | validation accuracy |\n| --- | --- | --- | --- | --- | --- |")
    for name in ("efficientnet_lite0", "efficientnet_lite1"):
        bb = create_backbone(name)
        final = bb.num_features
        widths = [stage_channels(s) for s in bb.model.blocks[-3:]]
        use_levels(bb.model, 3)
        feats, errors, _ = extract_embeddings([r.path for r in recs], bb, show_progress=False)
        assert not errors, errors
        x_all = head_features(feats, "sqrt_linear")
        for levels in (0, 1, 2, 3):
            # columns: [final, stage -3, stage -2, stage -1]; keep the final and the last `levels` stages
            x = np.hstack([x_all[:, :final], x_all[:, final + sum(widths[:3 - levels]):]])
            for c in (0.003, 0.01, 0.03):
                acc, loss, val = scores(x, y, n_train, len(ds.classes), c)
                print(f"| {name} | {levels} | {c} | {acc:.4f} | {loss:.4f} | {val:.4f} |", flush=True)


if __name__ == "__main__":
    main()
