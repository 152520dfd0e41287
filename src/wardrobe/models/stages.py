"""A network's stages, input side first: what ``--trainable last:N`` counts and what stays frozen."""

from __future__ import annotations

from torch import nn

from wardrobe.models.heads import head_linear


def stage_modules(model: nn.Module) -> list[nn.Module]:
    """The backbone's stages, input side first, classifier excluded. timm models with ``blocks``
    give stem, each block stage, then the head convolution; others their top-level children."""
    classifier = head_linear(model)
    if hasattr(model, "blocks") and isinstance(model.blocks, nn.Sequential):
        stem = [m for n, m in model.named_children() if n in ("conv_stem", "bn1")]
        head = [m for n, m in model.named_children() if n in ("conv_head", "bn2", "global_pool")]
        return [nn.ModuleList(stem), *model.blocks, nn.ModuleList(head)]
    out = []
    for _, child in model.named_children():
        if child is classifier or any(p is classifier.weight for p in child.parameters()):
            continue
        out.append(child)
    return out


def trainable_stages(model: nn.Module, trainable: str) -> list[nn.Module]:
    """The stages ``--trainable`` (all, head, last:N) leaves trainable."""
    stages = stage_modules(model)
    if trainable == "all":
        return stages
    if trainable == "head":
        return []
    n = int(trainable.split(":")[1])
    return stages[len(stages) - n:] if n else []


def depthwise_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The depthwise convolutions (one kernel per channel) of a network, in order."""
    return [m for m in model.modules()
            if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels]
