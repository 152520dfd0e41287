"""Networks trained from scratch that timm does not provide, with timm's classifier interface
(``num_features``, ``reset_classifier``, ``get_classifier``, ``pretrained_cfg['classifier']``) so that
heads, model files and export treat them like any timm model."""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn


class _Classifiable(nn.Module):
    pretrained_cfg = {"classifier": "classifier"}

    def __init__(self, num_features: int, num_classes: int, drop: float):
        super().__init__()
        self.num_features = num_features
        self.drop = nn.Dropout(drop) if drop else nn.Identity()
        self.classifier = nn.Linear(num_features, num_classes) if num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.forward_features(x)))


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SimpleCNN(_Classifiable):
    """Four conv blocks (32-64-128-256) with batch norm and max pooling, global average pooling."""

    def __init__(self, num_classes: int = 1000, width: int = 32, drop: float = 0.2):
        chans = [width, width * 2, width * 4, width * 8]
        super().__init__(chans[-1], num_classes, drop)
        layers, cin = [], 3
        for c in chans:
            layers += [_conv(cin, c), _conv(c, c), nn.MaxPool2d(2)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class AlexNet(_Classifiable):
    """AlexNet (Krizhevsky et al. 2012, torchvision's single-tower layout) with batch norm added so it
    trains from scratch with AdamW; adaptive pooling lets it take 128 px photos."""

    def __init__(self, num_classes: int = 1000, drop: float = 0.5):
        super().__init__(4096, num_classes, 0.0)

        def block(cin, cout, k, s, p):
            return [nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(3, 64, 11, 4, 2), nn.MaxPool2d(3, 2),
            *block(64, 192, 5, 1, 2), nn.MaxPool2d(3, 2),
            *block(192, 384, 3, 1, 1), *block(384, 256, 3, 1, 1), *block(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2),
        )
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.mlp = nn.Sequential(nn.Dropout(drop), nn.Linear(256 * 36, 4096), nn.ReLU(inplace=True),
                                 nn.Dropout(drop), nn.Linear(4096, 4096), nn.ReLU(inplace=True))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(self.features(x)).flatten(1))


# Registered with timm, so every network wardrobe builds comes from timm.create_model.
@register_model
def wardrobe_simple_cnn(pretrained: bool = False, **kwargs) -> SimpleCNN:
    return SimpleCNN(**_own(kwargs))


@register_model
def wardrobe_alexnet(pretrained: bool = False, **kwargs) -> AlexNet:
    return AlexNet(**_own(kwargs))


def _own(kwargs: dict) -> dict:
    # timm passes its pretrained-config arguments to every entry point; these networks have none
    return {k: v for k, v in kwargs.items() if k in ("num_classes", "drop")}


# Architecture names model files written before the timm registration store.
LEGACY_ARCHS = {"wardrobe.simple_cnn": "wardrobe_simple_cnn", "wardrobe.alexnet": "wardrobe_alexnet"}
