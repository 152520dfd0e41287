"""Losses for imbalanced classes: (weighted) cross-entropy with label smoothing, balanced softmax, focal loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wardrobe.training.config import LOSSES  # noqa: F401 - the names are declared with the options


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse frequency, normalised to mean 1 over the classes present."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0)
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


class BalancedSoftmax(nn.Module):
    """Ren et al. 2020 / logit-adjusted loss: cross-entropy on logits + log(prior), so the network
    learns scores for a balanced world and its plain argmax favours no class for being frequent."""

    def __init__(self, labels: np.ndarray, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        counts = np.maximum(np.bincount(labels, minlength=num_classes), 1).astype(np.float64)
        # not saved: it is rebuilt from the training labels, and a moving average of the weights
        # (--ema) copies the network before this loss exists, so best.ckpt would lack it
        self.register_buffer("log_prior", torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32),
                             persistent=False)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits + self.log_prior, target, label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    """Lin et al. 2017: cross-entropy scaled by (1 - p_true)^gamma, so easy examples count less."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, weight=self.weight, reduction="none", label_smoothing=self.label_smoothing)
        p_true = torch.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        return ((1 - p_true).clamp(min=0) ** self.gamma * ce).mean()


def make_loss(kind: str, labels: np.ndarray, num_classes: int, label_smoothing: float = 0.0,
              gamma: float = 2.0) -> nn.Module:
    if kind == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if kind == "weighted_ce":
        return nn.CrossEntropyLoss(weight=class_weights(labels, num_classes), label_smoothing=label_smoothing)
    if kind == "balanced":
        return BalancedSoftmax(labels, num_classes, label_smoothing)
    if kind == "focal":
        return FocalLoss(gamma, label_smoothing=label_smoothing)
    raise ValueError(f"loss must be one of {LOSSES}")
