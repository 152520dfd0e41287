"""MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a training batch.

A mixed batch is scored as ``lam * loss(logits, y) + (1 - lam) * loss(logits, y[perm])``: for the
cross-entropy that equals the loss on mixed soft labels (what torchvision's v2.MixUp / v2.CutMix
return), and it also works unchanged for the class-weighted, balanced-softmax and focal losses,
which take class indices.
"""

from __future__ import annotations

import torch

MIXUP_ALPHA = 0.2  # timm's and torchvision's recipe values
CUTMIX_ALPHA = 1.0


class BatchMixer:
    """With probability ``share`` a batch is mixed, half the time by MixUp, half by CutMix."""

    # Draws from torch's global generator, which the run's seed (seed_everything) fixes.
    def __init__(self, share: float):
        self.share = share

    @staticmethod
    def _uniform() -> float:
        return float(torch.rand(()))

    @staticmethod
    def _beta(alpha: float) -> float:
        return float(torch.distributions.Beta(alpha, alpha).sample())

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        """(x, y, y_other, lam): y_other is None when the batch is left as it is."""
        if self.share <= 0 or len(y) < 2 or self._uniform() >= self.share:
            return x, y, None, 1.0
        perm = torch.randperm(len(y))
        if self._uniform() < 0.5:
            lam = self._beta(MIXUP_ALPHA)
            return lam * x + (1 - lam) * x[perm], y, y[perm], lam
        lam = self._beta(CUTMIX_ALPHA)
        h, w = x.shape[-2:]
        ch, cw = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        cy, cx = int(self._uniform() * h), int(self._uniform() * w)
        top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (h * w)  # the pasted box's true share after clipping
        return x, y, y[perm], lam


def mixed_loss(loss_fn, logits: torch.Tensor, y: torch.Tensor, y_other: torch.Tensor | None, lam: float):
    if y_other is None:
        return loss_fn(logits, y)
    return lam * loss_fn(logits, y) + (1 - lam) * loss_fn(logits, y_other)
