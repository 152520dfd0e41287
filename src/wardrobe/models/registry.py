"""Backbones by name: offline EfficientNet-Lite, or any timm architecture for online users."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import torch

from wardrobe.errors import WardrobeError
from wardrobe.models.lite import LITE_INPUT_SIZE, LITE_MEAN, LITE_PACKAGES, LITE_STD, lite_state_dict
from wardrobe.models.scratch import SCRATCH_ARCHS
from wardrobe.transforms import Preprocess

ALIASES = {}
for _name, (_arch, _pkg, _cls) in LITE_PACKAGES.items():
    ALIASES[_arch] = _name
    ALIASES[_name.replace("efficientnet_", "")] = _name
    ALIASES[_name.replace("_", "-")] = _name

OFFLINE_MODELS = tuple(LITE_PACKAGES)
DEFAULT_BACKBONE = "efficientnet_lite0"
# Classic networks to train from scratch: wardrobe name -> architecture (timm's, or wardrobe.*).
SCRATCH_MODELS = {"alexnet": "wardrobe.alexnet", "simple_cnn": "wardrobe.simple_cnn",
                  "mobilenet_v1": "mobilenetv1_100"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    name: str  # wardrobe's name (efficientnet_lite0) or the timm name
    arch: str  # timm architecture to rebuild it
    model: torch.nn.Module  # timm model; num_classes=0 gives pooled embeddings
    preprocess: Preprocess
    weights: str  # where the weights came from, for the model file and cache keys

    @property
    def num_features(self) -> int:
        return self.model.num_features


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True, drop_path_rate: float = 0.0) -> Backbone:
    """``drop_path_rate``: stochastic depth for training timm networks (no effect in eval mode)."""
    import timm  # heavy: timm, only when building a network

    extra = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}

    name = canonical_name(name)
    if name in LITE_PACKAGES:
        arch = LITE_PACKAGES[name][0]
        model = timm.create_model(arch, pretrained=False, **extra)
        weights = "random"
        if pretrained:
            model.load_state_dict(lite_state_dict(name))
            weights = f"{LITE_PACKAGES[name][1]}==0.1.0"
        model.reset_classifier(0)
        pre = Preprocess(input_size=LITE_INPUT_SIZE[name], mean=LITE_MEAN, std=LITE_STD)
        return Backbone(name, arch, model.eval(), pre, weights)
    if name in SCRATCH_MODELS:
        arch = SCRATCH_MODELS[name]
        if pretrained:
            raise WardrobeError(f"{name}: no pretrained weights; train it with --mode scratch")
        model = build_network(arch, 0)
        return Backbone(name, arch, model.eval(), Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD), "random")
    if not timm.is_model(name):
        raise WardrobeError(f"unknown model '{name}'; 'wardrobe models' lists them "
                            f"(offline pretrained: {', '.join(OFFLINE_MODELS)})")
    model = _create_timm(name, pretrained, **extra)
    cfg = model.pretrained_cfg
    pre = Preprocess(input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
                     crop_pct=float(cfg.get("crop_pct", 0.875)),
                     interpolation=cfg.get("interpolation", "bicubic") if cfg.get("interpolation") in
                     ("bicubic", "bilinear", "nearest") else "bilinear",
                     mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))), std=tuple(cfg.get("std", (0.229, 0.224, 0.225))))
    weights = (cfg.get("hf_hub_id") or cfg.get("url") or "timm") if pretrained else "random"
    return Backbone(name, name, model.eval(), pre, weights)


def _create_timm(name: str, pretrained: bool, **extra) -> torch.nn.Module:
    import timm  # heavy: timm, only when building a network

    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=0, **extra)
    offline_msg = (f"{name}: pretrained weights cannot be downloaded (no connection to the model hub); "
                   f"models that work offline: {', '.join(OFFLINE_MODELS)}")
    if not _hub_reachable():
        # Without this, the hub client retries for about a minute before giving up.
        import huggingface_hub.constants as hf_constants  # optional: huggingface_hub, only when online weights are asked for

        saved = hf_constants.HF_HUB_OFFLINE
        hf_constants.HF_HUB_OFFLINE = True
        try:
            return timm.create_model(name, pretrained=True, num_classes=0, **extra)
        except Exception:
            raise WardrobeError(offline_msg) from None
        finally:
            hf_constants.HF_HUB_OFFLINE = saved
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, **extra)
    except (OSError, RuntimeError) as exc:
        raise WardrobeError(f"{name}: could not download pretrained weights ({exc}); "
                            f"models that work offline: {', '.join(OFFLINE_MODELS)}") from None


def build_network(arch: str, num_classes: int) -> torch.nn.Module:
    """An architecture by the name a model file stores, randomly initialised."""
    import timm  # heavy: timm, only when building a network


    if arch in SCRATCH_ARCHS:
        return SCRATCH_ARCHS[arch](num_classes=num_classes)
    if not timm.is_model(arch):
        raise WardrobeError(f"unknown architecture '{arch}'")
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


# Names `wardrobe models` lists besides the offline ones; any other timm name works too.
LISTED_TIMM = ("mobilenetv2_100", "resnet18", "resnet50", "efficientnet_b0", "convnext_tiny", "vgg16",
               "inception_v3", "xception41")


def model_catalogue() -> list[dict]:
    """name, architecture, parameters (with a 1000-class head), input size, pretrained weights here."""
    import timm  # heavy: timm, only when building a network

    rows = []
    for name in (*OFFLINE_MODELS, *SCRATCH_MODELS, *LISTED_TIMM):
        if name in LITE_PACKAGES:
            arch, size, pre = LITE_PACKAGES[name][0], LITE_INPUT_SIZE[name], "yes (offline package)"
        elif name in SCRATCH_MODELS:
            arch, size, pre = SCRATCH_MODELS[name], 224, "no (train with --mode scratch)"
        else:
            arch, pre = name, "online only (downloaded by timm)"
            size = int(timm.get_pretrained_cfg(name).input_size[-1]) if timm.get_pretrained_cfg(name) else 224
        with torch.device("meta"):
            net = build_network(arch, 1000)
        rows.append({"name": name, "arch": arch, "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
                     "input_size": size, "pretrained": pre})
    return rows
