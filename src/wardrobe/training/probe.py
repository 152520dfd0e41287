"""Probe mode: frozen backbone, cached embeddings, multinomial logistic regression on top."""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from wardrobe.data.sources import Dataset
from wardrobe.errors import WardrobeError
from wardrobe.metrics import compute_metrics, softmax
from wardrobe.models.heads import head_linear, set_head, signed_sqrt_np
from wardrobe.models.levels import supports_levels, use_levels
from wardrobe.models.registry import Backbone, create_backbone
from wardrobe.training.embeddings import extract_embeddings
from wardrobe.training.runfolder import RunResult
from wardrobe.ui import info, warn

DEFAULT_CS = (0.003, 0.01, 0.03, 0.1, 0.3)
DEFAULT_HEAD = "sqrt_linear"
# Lite1 with the pooled outputs of its last three block stages beside its final embedding: 0.891
# validation accuracy on clothing-top10 against Lite0's 0.871, in the same time budget
# (docs/benchmarks.md, session 15). Lite0 stays the default of fine-tuning and the fastest to serve.
PROBE_BACKBONE = "efficientnet_lite1"
DEFAULT_LEVELS = 3


def head_features(x: np.ndarray, head: str) -> np.ndarray:
    """What the head's linear layer sees, computed in numpy on cached embeddings."""
    return signed_sqrt_np(x) if head == "sqrt_linear" else x


def fit_linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                     num_classes: int, cs=DEFAULT_CS, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Multinomial logistic regression on standardised embeddings; the inverse regularisation C is
    the one with the best validation log-loss (the search stops at the first C that does worse).
    Standardisation is folded into the returned weights, so the head is one plain linear layer on
    raw embeddings: logits = x @ W.T + b."""
    mean = x_train.mean(0)
    std = x_train.std(0) + 1e-6
    xt = (x_train - mean) / std
    xv = (x_val - mean) / std
    best = None
    history = []
    clf = None
    for c in sorted(cs):
        # Each C starts from the previous (stronger-regularised) solution: the same optimum in
        # roughly half the L-BFGS iterations, which is most of a warm-cache rerun's time.
        prev = clf
        clf = LogisticRegression(C=c, max_iter=300, tol=1e-3, random_state=seed, warm_start=True)
        if prev is not None:
            clf.coef_, clf.intercept_ = prev.coef_.copy(), prev.intercept_.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(xt, y_train)
        probs = _full_probs(clf, xv, num_classes)
        loss = float(-np.log(np.clip(probs[np.arange(len(y_val)), y_val], 1e-12, None)).mean()) if len(y_val) else 0.0
        acc = float((probs.argmax(1) == y_val).mean()) if len(y_val) else 0.0
        history.append({"C": c, "val_log_loss": round(loss, 5), "val_accuracy": round(acc, 5)})
        if best is None or loss < best[0]:
            best = (loss, c, clf)
        elif len(y_val):
            # Validation log-loss along the regularisation path rises once past its minimum: the
            # weaker-regularised fits left are the slowest and would not be chosen.
            break
    _, c, clf = best
    w, b = folded_head(clf, mean, std, num_classes)
    return w, b, {"C": c, "search": history}


def folded_head(clf: LogisticRegression, mean: np.ndarray, std: np.ndarray,
                num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The linear layer on raw embeddings that gives ``clf``'s logits on embeddings standardised by
    ``mean`` and ``std``: logits = x @ W.T + b (float32)."""
    w = np.zeros((num_classes, len(mean)), dtype=np.float64)
    b = np.full(num_classes, -1e4, dtype=np.float64)  # classes absent from training are never predicted
    coef, intercept = _full_coef(clf)
    w[clf.classes_] = coef / std
    b[clf.classes_] = intercept - (coef / std) @ mean
    return w.astype(np.float32), b.astype(np.float32)


def _full_coef(clf: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    if len(clf.classes_) == 2:
        # sklearn keeps one row for two classes; the softmax equivalent is +/- half of it.
        return np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2]), np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    return clf.coef_, clf.intercept_


def _full_probs(clf: LogisticRegression, x: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(x), num_classes))
    out[:, clf.classes_] = clf.predict_proba(x)
    return out


def attach_head(model: torch.nn.Module, w: np.ndarray, b: np.ndarray, head: str) -> torch.nn.Module:
    """Give a timm backbone (num_classes=0) a classifier head of this kind with these weights."""
    set_head(model, w.shape[0], head)
    head = head_linear(model)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w))
        head.bias.copy_(torch.from_numpy(b))
    return model.eval()


def default_levels(model: torch.nn.Module) -> int:
    """The levels a run uses when none are given: DEFAULT_LEVELS where the network has the stages."""
    return DEFAULT_LEVELS if supports_levels(model) else 0


def _split_embeddings(ds: Dataset, backbone: Backbone, batch_size: int, workers: int | None, runtime: str,
                      use_cache: bool, show_progress: bool):
    """(records: train then validation, their embeddings, {index: reason} of unusable photos,
    extraction stats, class indices, mask of the usable training rows, mask of the usable validation rows)."""
    train_recs = ds.split("train")
    recs = train_recs + ds.split("validation")
    feats, errors, stats = extract_embeddings([r.path for r in recs], backbone, batch_size, workers, runtime,
                                              use_cache=use_cache, show_progress=show_progress)
    index = {c: i for i, c in enumerate(ds.classes)}
    y = np.array([index[r.label] for r in recs])
    ok = np.array([i not in errors for i in range(len(recs))], dtype=bool)
    is_train = np.arange(len(recs)) < len(train_recs)
    return recs, feats, errors, stats, y, ok & is_train, ok & ~is_train


def train_probe(ds: Dataset, model: str, batch_size: int, workers: int | None, runtime: str, cs, head: str,
                use_cache: bool, show_progress: bool, noise: float = 0.0, seed: int = 0,
                weights: str | None = None, levels: int | None = None) -> RunResult:
    """Embeddings of every train and validation photo from the frozen backbone (cached), then the
    logistic regression whose C has the best validation log-loss. ``noise``: the regression also sees
    embeddings of a copy of each training photo with Gaussian pixel noise of that sigma.
    ``levels``: also the pooled outputs of the last N block stages (None: DEFAULT_LEVELS where the
    network supports it)."""
    backbone = create_backbone(model, pretrained=True, weights=weights)
    levels = default_levels(backbone.model) if levels is None else levels
    use_levels(backbone.model, levels)
    recs, feats, errors, stats, y, tr, va = _split_embeddings(ds, backbone, batch_size, workers, runtime, use_cache,
                                                              show_progress)
    for i, reason in sorted(errors.items()):
        ds.skipped.add(recs[i].path, reason)  # raises under --strict
    if errors:
        warn(f"{len(errors)} photos could not be used: " + ds.skipped.summary())
    empty = [c for k, c in enumerate(ds.classes) if not (y[tr] == k).any()]
    if empty:
        raise WardrobeError(f"{ds.name}: class {', '.join(map(repr, empty))} has no usable training photo")
    hf = head_features(feats, head)
    x_fit, y_fit = hf[tr], y[tr]
    if noise:
        train_paths = [recs[i].path for i in np.flatnonzero(tr)]
        noisy, noisy_errors, noisy_stats = extract_embeddings(
            train_paths, backbone, batch_size, workers, runtime, use_cache=use_cache,
            show_progress=show_progress, noise=noise, noise_seed=seed)
        keep = np.array([i not in noisy_errors for i in range(len(train_paths))], dtype=bool)
        x_fit = np.concatenate([x_fit, head_features(noisy, head)[keep]])
        y_fit = np.concatenate([y_fit, y[tr][keep]])
        stats = {**stats, "noisy": noisy_stats}
    t_fit = time.perf_counter()
    w, b, search = fit_linear_probe(x_fit, y_fit, hf[va], y[va], len(ds.classes), cs=cs, seed=seed)
    fit_seconds = time.perf_counter() - t_fit
    val_probs = softmax(hf[va] @ w.T + b)
    metrics = compute_metrics(y[va], val_probs, ds.classes)
    info(f"validation accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['f1_macro']:.4f} "
         f"(C={search['C']}, {int(tr.sum())} training photos)")
    return RunResult(attach_head(backbone.model, w, b, head), backbone, backbone.preprocess, head,
                     {"head": {"type": head, "fit": "logistic_regression", "C_grid": list(cs), **search},
                      "levels": levels, "noise": noise},
                     metrics, {"train": int(tr.sum()), "validation": int(va.sum())},
                     timings={"fit_seconds": round(fit_seconds, 2), "embeddings": stats},
                     validation=(val_probs, y[va]), embeddings=(feats[tr], feats[va]))


def probe_init(backbone: Backbone, ds: Dataset, cfg, show_progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """LP-FT's first step: a linear head (weights, bias) for a fine-tuning run, fitted like the probe
    on the pretrained network's cached embeddings of the training photos, C chosen on validation.
    Raw embeddings, as the fine-tuned network's plain linear head sees them."""
    _, feats, _, _, y, tr, va = _split_embeddings(ds, backbone, cfg.batch_size, cfg.workers, "auto",
                                                  cfg.use_pixel_cache, show_progress)
    # without a validation split there is nothing to choose C on: the grid's usual winner
    w, b, search = fit_linear_probe(feats[tr], y[tr], feats[va], y[va], len(ds.classes),
                                    cs=DEFAULT_CS if va.any() else (0.01,), seed=cfg.seed)
    if va.any():
        acc = next(h["val_accuracy"] for h in search["search"] if h["C"] == search["C"])
        info(f"head initialised from a logistic regression on the frozen embeddings (C={search['C']}, "
             f"validation accuracy {acc:.4f})")
    return w, b
