"""The model registry, in timm's manner: one table of entries (name and aliases, architecture,
preprocessing, weight source). Every network comes from ``timm.create_model``: wardrobe's own
scratch networks are registered with timm (``wardrobe.models.scratch``), and the offline
EfficientNet-Lite weights are a weight source like any other."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch

from wardrobe.errors import WardrobeError
from wardrobe.models.lite import LITE_INPUT_SIZE, LITE_MEAN, LITE_PACKAGES, LITE_STD, lite_state_dict
from wardrobe.models.scratch import LEGACY_ARCHS
from wardrobe.models.weights import (
    hub_cache_revision,
    hub_folder_config,
    load_into,
    read_state_dict,
    sha256,
    weights_file,
)
from wardrobe.transforms import Preprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightSource:
    """Where pretrained weights come from: ``load`` gives a state dict for the architecture
    (offline), or None for timm's own download from the model hub (online)."""
    label: str  # recorded in the model file and in cache keys
    load: Callable[[], dict] | None = None

    @property
    def offline(self) -> bool:
        return self.load is not None


HUB = WeightSource("timm")  # the label is replaced by the hub id once downloaded


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str  # a timm model name
    aliases: tuple[str, ...] = ()
    preprocess: Preprocess | None = None  # None: the architecture's pretrained_cfg
    weights: WeightSource | None = None  # None: no pretrained weights; train with --mode scratch
    listed: bool = field(default=True, compare=False)  # shown by `wardrobe models`


def _lite(name: str) -> ModelEntry:
    arch, package, _ = LITE_PACKAGES[name]
    return ModelEntry(name, arch, aliases=(arch, name.replace("efficientnet_", ""), name.replace("_", "-")),
                      preprocess=Preprocess(input_size=LITE_INPUT_SIZE[name], mean=LITE_MEAN, std=LITE_STD),
                      weights=WeightSource(f"{package}==0.1.0", lambda: lite_state_dict(name)))


_IMAGENET = Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD)
ENTRIES: tuple[ModelEntry, ...] = (
    *(_lite(n) for n in LITE_PACKAGES),
    ModelEntry("alexnet", "wardrobe_alexnet", preprocess=_IMAGENET),
    ModelEntry("simple_cnn", "wardrobe_simple_cnn", preprocess=_IMAGENET),
    ModelEntry("mobilenet_v1", "mobilenetv1_100", preprocess=_IMAGENET),
    # The seeds' networks: pretrained by timm from the hub when online; any other timm name works too.
    *(ModelEntry(n, n, weights=HUB) for n in ("mobilenetv2_100", "resnet18", "resnet50", "efficientnet_b0",
                                               "convnext_tiny", "vgg16", "inception_v3", "xception41")),
)
REGISTRY = {e.name: e for e in ENTRIES}
ALIASES = {a: e.name for e in ENTRIES for a in e.aliases}
OFFLINE_MODELS = tuple(e.name for e in ENTRIES if e.weights is not None and e.weights.offline)
SCRATCH_MODELS = {e.name: e.arch for e in ENTRIES if e.weights is None}
DEFAULT_BACKBONE = "efficientnet_lite0"


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


def lookup(name: str) -> ModelEntry:
    """The registry's entry for a name or alias; any other timm name gets an entry with timm's
    preprocessing and hub weights."""
    name = canonical_name(name)
    if name in REGISTRY:
        return REGISTRY[name]
    if not timm.is_model(name):
        raise WardrobeError(f"unknown model '{name}'; 'wardrobe models' lists them "
                            f"(offline pretrained: {', '.join(OFFLINE_MODELS)})")
    return ModelEntry(name, name, weights=HUB, listed=False)


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True, drop_path_rate: float = 0.0,
                    weights: str | Path | None = None) -> Backbone:
    """A network without its classifier (pooled embeddings), with the weights its entry's source
    gives when ``pretrained``, or those of the file or hub-style folder ``weights``.
    ``drop_path_rate``: stochastic depth for training timm networks."""
    entry = lookup(name)
    extra = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    if weights is not None:
        return _from_file(entry, Path(weights), extra)
    if pretrained and entry.weights is None:
        raise WardrobeError(f"{entry.name}: no pretrained weights; train it with --mode scratch")
    weights = "random"
    if pretrained and entry.weights.offline:
        model = timm.create_model(entry.arch, pretrained=False, **extra)
        model.load_state_dict(entry.weights.load())
        model.reset_classifier(0)
        weights = entry.weights.label
    elif pretrained:
        model = _download(entry.arch, **extra)
        hub_id = model.pretrained_cfg.get("hf_hub_id")
        rev = hub_cache_revision(hub_id) if hub_id else None
        weights = f"{hub_id}@{rev}" if rev else (hub_id or model.pretrained_cfg.get("url") or entry.weights.label)
    else:
        model = timm.create_model(entry.arch, pretrained=False, num_classes=0, **extra)
    return Backbone(entry.name, entry.arch, model.eval(), entry.preprocess or _timm_preprocess(model), weights)


def _from_file(entry: ModelEntry, path: Path, extra: dict) -> Backbone:
    """The entry's architecture with the tensors of a weights file (timm's key names, the classifier
    replaced for the user's classes); recorded as the file's name and SHA-256."""
    file = weights_file(path)
    model = timm.create_model(entry.arch, pretrained=False, num_classes=0, **extra)
    load_into(model, read_state_dict(file), f"--weights {file}")
    hub_cfg = hub_folder_config(file).get("pretrained_cfg") or {}
    pre = entry.preprocess or _timm_preprocess(model, hub_cfg)
    return Backbone(entry.name, entry.arch, model.eval(), pre, f"file:{file.name}@sha256:{sha256(file)}")


def _timm_preprocess(model: torch.nn.Module, overlay: dict | None = None) -> Preprocess:
    cfg = {**(getattr(model, "pretrained_cfg", None) or {}), **(overlay or {})}
    interpolation = cfg.get("interpolation", "bicubic")
    return Preprocess(input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
                      crop_pct=float(cfg.get("crop_pct", 0.875)),
                      interpolation=interpolation if interpolation in ("bicubic", "bilinear", "nearest") else "bilinear",
                      mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)))


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _download(arch: str, **extra) -> torch.nn.Module:
    offline_msg = (f"{arch}: pretrained weights cannot be downloaded (no connection to the model hub) and are not "
                   f"in the local cache (HF_HOME); use a weights file: --model {arch} --weights FILE, or a "
                   f"model that works offline: {', '.join(OFFLINE_MODELS)}")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or not _hub_reachable():
        # Offline: the local cache (HF_HOME) answers, or this fails at once instead of the hub client
        # retrying for about a minute.
        import huggingface_hub.constants as hf_constants  # optional: huggingface_hub, only for hub weights

        saved = hf_constants.HF_HUB_OFFLINE
        hf_constants.HF_HUB_OFFLINE = True
        try:
            return timm.create_model(arch, pretrained=True, num_classes=0, **extra)
        except Exception:
            raise WardrobeError(offline_msg) from None
        finally:
            hf_constants.HF_HUB_OFFLINE = saved
    try:
        return timm.create_model(arch, pretrained=True, num_classes=0, **extra)
    except (OSError, RuntimeError) as exc:
        raise WardrobeError(f"{arch}: could not download pretrained weights ({exc}); "
                            f"models that work offline: {', '.join(OFFLINE_MODELS)}") from None


def build_network(arch: str, num_classes: int) -> torch.nn.Module:
    """An architecture by the name a model file stores, randomly initialised."""
    arch = LEGACY_ARCHS.get(arch, arch)
    if not timm.is_model(arch):
        raise WardrobeError(f"unknown architecture '{arch}'")
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def model_catalogue() -> list[dict]:
    """name, architecture, parameters (with a 1000-class head), input size, pretrained weights here."""
    rows = []
    for e in (e for e in ENTRIES if e.listed):
        cfg = timm.get_pretrained_cfg(e.arch) if e.preprocess is None else None
        if e.weights is None:
            pre = "none (train with --mode scratch)"
        elif e.weights.offline:
            pre = "offline package"
        else:
            rev = hub_cache_revision(cfg.hf_hub_id) if cfg and cfg.hf_hub_id else None
            pre = f"local cache (HF_HOME, {rev[:8]})" if rev else "hub when online"
        size = e.preprocess.input_size if e.preprocess else (int(cfg.input_size[-1]) if cfg else 224)
        with torch.device("meta"):
            net = build_network(e.arch, 1000)
        rows.append({"name": e.name, "arch": e.arch, "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
                     "input_size": size, "pretrained": pre, "from_a_file": f"--model {e.name} --weights FILE"})
    return rows
