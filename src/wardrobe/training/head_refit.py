"""A second head for a fine-tuned network: a logistic regression fitted on the finished network's
own embeddings of the training photos (unaugmented, after the weight average), mixed into the
trained head. The trained head learnt on augmented photos while the features under it moved; the
second one sees the final features of the photos as they are, and is a convex fit with no
learning rate, so the two err on different photos (decoupled classifier re-training, Kang et al.,
ICLR 2020). Both heads are linear in the embedding, so the mix is one linear head: it is folded
into the network's weights and every export carries it.

Measured with a weight of 0.25 (bench/cv_head_refit.py, docs/benchmarks.md session 35): clothing-17
5-fold CV accuracy 0.8898 -> 0.8932, macro-F1 0.8033 -> 0.8076; top-10 validation +0 to +5 photos
on six runs, never fewer."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from wardrobe.training.probe import folded_head

# Strong regularisation: the network fits its training photos (train accuracy 0.98-0.99), so their
# embeddings separate easily, and the second head must not learn their accidents (C chosen on
# clothing-17 CV folds, cross-fitted; 0.1 was behind).
REFIT_C = 0.01


def refit_head(model: nn.Module, train_embeddings: np.ndarray, train_labels: np.ndarray, weight: float,
               c: float = REFIT_C) -> dict:
    """Mix a logistic regression on ``train_embeddings`` into ``model``'s linear head in place: the
    new logits are (1 - weight) x the head's + weight x the regression's. Returns what was done,
    for the run's config."""
    head = model.get_classifier()
    if not isinstance(head, nn.Linear) or head.in_features != train_embeddings.shape[1] \
            or len(np.unique(train_labels)) != head.out_features:
        return {"weight": 0.0, "skipped": "the head is not one linear layer over the embedding, every class"}
    scaler = StandardScaler()
    z = scaler.fit_transform(train_embeddings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr = LogisticRegression(C=c, max_iter=2000).fit(z, train_labels)
    # the standardisation folded in (a constant feature has scale 1 there)
    w2, b2 = folded_head(lr, scaler.mean_, scaler.scale_, head.out_features)
    with torch.no_grad():
        head.weight.mul_(1 - weight).add_(weight * torch.from_numpy(w2).to(head.weight))
        head.bias.mul_(1 - weight).add_(weight * torch.from_numpy(b2).to(head.bias))
    return {"weight": weight, "c": c, "train_accuracy": round(float(lr.score(z, train_labels)), 5)}
