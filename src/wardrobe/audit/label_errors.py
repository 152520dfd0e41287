"""Audit findings that need a backbone: near duplicates by embedding similarity, and likely label
errors by cross-validated predictions on the cached probe embeddings (confident-learning style)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from cleanlab.rank import get_label_quality_scores
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wardrobe.data.hashing import groups_from_pairs
from wardrobe.data.sources import Record
from wardrobe.models.registry import DEFAULT_BACKBONE, create_backbone
from wardrobe.training.embeddings import extract_embeddings
from wardrobe.training.probe import head_features
from wardrobe.ui import info


def cosine_pairs(x: np.ndarray, threshold: float, block: int = 1024) -> list[tuple[int, int, float]]:
    """Index pairs (i < j) of rows of ``x`` whose cosine similarity is at least ``threshold``."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out = []
    for s in range(0, len(x), block):
        sim = x[s:s + block] @ x[s:].T
        ii, jj = np.nonzero(sim >= threshold)
        keep = jj > ii
        for i, j in zip(ii[keep].tolist(), jj[keep].tolist()):
            out.append((i + s, j + s, float(sim[i, j])))
    return out


def out_of_fold_probs(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, c: float = 0.1) -> np.ndarray:
    """Each photo's class probabilities from a logistic regression that never saw it (stratified K-fold)."""

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300, tol=1e-4, random_state=seed))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_predict(clf, x, y, cv=cv, method="predict_proba")


def find_label_errors(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Confident learning, self-confidence variant: a photo is suspect when the model that never saw
    it prefers another class and gives its own label less than that class's threshold (the mean
    probability photos labelled with it get). Returns a boolean mask.

    Not cleanlab's ``find_label_issues``: on small, nearly separable sets its confident joint counts
    no photo as confidently another class (every class threshold is near 0.97), so it flagged none of
    the planted errors in tests/test_audit.py; cleanlab ranks the suspects (``label_quality``)."""
    k = probs.shape[1]
    thresholds = np.array([probs[y == c, c].mean() if (y == c).any() else 1.0 for c in range(k)])
    given = probs[np.arange(len(y)), y]
    return (probs.argmax(1) != y) & (given < thresholds[y])


def label_quality(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """cleanlab's label quality score per photo (lower: more likely mislabelled), for ranking suspects."""
    return get_label_quality_scores(labels=y, pred_probs=probs, method="self_confidence")


def embedding_findings(records: Sequence[Record], o) -> dict:
    """``embedding_duplicates`` and ``label_errors`` sections of audit.json (``o``: AuditOptions)."""

    backbone = create_backbone(o.model or DEFAULT_BACKBONE, pretrained=True)
    feats, errors, stats = extract_embeddings([r.path for r in records], backbone, o.batch_size, o.workers,
                                              o.runtime, show_progress=o.show_progress)
    ok = [i for i in range(len(records)) if i not in errors]
    recs = [records[i] for i in ok]
    x = feats[ok]
    out: dict = {}
    groups = []
    pairs = cosine_pairs(x, o.embedding_similarity)
    for g in groups_from_pairs(len(recs), [(i, j) for i, j, _ in pairs]):
        members = [recs[i] for i in g]
        labels = sorted({r.label for r in members})
        splits = sorted({r.split for r in members if r.split})
        groups.append({"members": [{"path": str(r.path), "label": r.label, "split": r.split} for r in members],
                       "labels": labels, "splits": splits, "spans_splits": len(splits) > 1,
                       "conflicting_labels": len(labels) > 1})
    out["embedding_duplicates"] = {
        "rule": f"cosine similarity of {backbone.name} embeddings >= {o.embedding_similarity}",
        "groups": groups, "n_groups": len(groups), "n_photos": sum(len(g["members"]) for g in groups),
        "n_spanning_splits": sum(g["spans_splits"] for g in groups),
        "n_conflicting_labels": sum(g["conflicting_labels"] for g in groups), "embeddings": stats}

    classes = sorted({r.label for r in recs})
    counts = {c: sum(r.label == c for r in recs) for c in classes}
    usable = [c for c in classes if counts[c] >= 2]
    folds = min(o.folds, min((counts[c] for c in usable), default=0))
    section = {"method": f"{folds}-fold out-of-fold probabilities of a logistic regression on {backbone.name} "
                         "embeddings; confident-learning thresholds, ranked by cleanlab's label quality", "suspects": [],
               "classes_too_small": [c for c in classes if c not in usable]}
    if len(usable) >= 2 and folds >= 2:
        keep = [i for i, r in enumerate(recs) if r.label in set(usable)]
        index = {c: k for k, c in enumerate(usable)}
        y = np.array([index[recs[i].label] for i in keep])
        info(f"label errors: {folds}-fold cross-validated probe on {len(keep)} photos")
        probs = out_of_fold_probs(head_features(x[keep], "sqrt_linear"), y, folds)
        suspect = find_label_errors(probs, y)
        quality = label_quality(probs, y)
        given = probs[np.arange(len(y)), y]
        rows = []
        for k in np.nonzero(suspect)[0]:
            r = recs[keep[k]]
            best = int(probs[k].argmax())
            rows.append({"path": str(r.path), "label": r.label, "split": r.split,
                         "prob_given": round(float(given[k]), 4), "suggested": usable[best],
                         "prob_suggested": round(float(probs[k, best]), 4),
                         "label_quality": round(float(quality[k]), 4)})
        section["suspects"] = sorted(rows, key=lambda s: s["label_quality"])
        section["out_of_fold_accuracy"] = round(float((probs.argmax(1) == y).mean()), 4)
    out["label_errors"] = section
    return out
