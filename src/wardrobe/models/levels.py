"""Multi-level embeddings: the pooled outputs of a network's last block stages beside its final
pooled embedding, from the same forward pass.

The final embedding is tuned to ImageNet's classes; the earlier stages keep more of the texture and
shape detail that tells a shirt from a longsleeve. For the probe on clothing-top10 (Lite1, 5-fold
CV over train and validation) adding the last three stages lifts accuracy from 0.879 to 0.891 and
lowers log-loss from 0.351 to 0.329 at no extra compute (docs/benchmarks.md, session 15)."""

from __future__ import annotations

import types

import torch
from torch import nn

from wardrobe.errors import WardrobeError

_PARTS = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool")


def supports_levels(model: nn.Module) -> bool:
    """timm's EfficientNet family (stem, block stages, 1x1 head convolution), which the probe's
    offline backbones all are."""
    return all(hasattr(model, p) for p in _PARTS) and isinstance(model.blocks, nn.Sequential) and len(model.blocks) >= 4


def _forward_levels(self, x: torch.Tensor) -> torch.Tensor:
    return forward_levels_from(self, self.bn1(self.conv_stem(x)), 0)


def forward_levels_from(model: nn.Module, x: torch.Tensor, start: int) -> torch.Tensor:
    """The multi-level embedding map from block stage ``start`` on, given that stage's input (the
    fine-tuning fast path runs the frozen stages before it elsewhere, training/frozen.py)."""
    # Pools here rather than in global_pool, because the stages' maps differ in size: the result is
    # a 1x1 map whose channels are [final embedding, the tapped stages' means], which global_pool
    # (average, flatten) passes through unchanged.
    first_tap = first_level_stage(model)
    if start > first_tap:
        raise ValueError(f"stage {start} is past the first tapped stage {first_tap}")
    pooled = []
    for i in range(start, len(model.blocks)):
        x = model.blocks[i](x)
        if i >= first_tap:
            pooled.append(x.mean((2, 3), keepdim=True))
    x = model.bn2(model.conv_head(x))
    return torch.cat([x.mean((2, 3), keepdim=True), *pooled], 1)


def first_level_stage(model: nn.Module) -> int:
    """The first block stage whose pooled output joins the embedding (len(blocks) without levels)."""
    return len(model.blocks) - getattr(model, "wardrobe_levels", 0)


def use_levels(model: nn.Module, levels: int) -> nn.Module:
    """Make ``model``'s pooled embedding (what ``forward_head(..., pre_logits=True)`` and a
    num_classes=0 model return) the concatenation of its final embedding and the means of its last
    ``levels`` block stages. Call before attaching a head: ``num_features`` grows to match. The
    weights, and so the model file's tensors, are unchanged."""
    if levels < 1:
        return model
    if not supports_levels(model):
        raise WardrobeError(f"{type(model).__name__}: multi-level embeddings need an EfficientNet-family network")
    if getattr(model, "wardrobe_levels", 0):
        raise ValueError("use_levels was already applied to this network")
    if levels > len(model.blocks):
        raise WardrobeError(f"levels {levels}: this network has only {len(model.blocks)} block stages")
    extra = sum(stage_channels(model.blocks[i]) for i in range(len(model.blocks) - levels, len(model.blocks)))
    model.wardrobe_levels = levels
    model.forward_features = types.MethodType(_forward_levels, model)
    model.num_features = model.num_features + extra
    model.head_hidden_size = model.num_features
    if getattr(model, "num_classes", 0):  # a head already sized for the old embedding
        model.reset_classifier(model.num_classes)
    return model


def stage_channels(stage: nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels
