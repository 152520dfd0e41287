"""The model file: one safetensors file holding weights and a JSON description of everything needed
to use them (classes, preprocessing, architecture, versions, training metrics).

safetensors stores tensors and strings only, so loading a model never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from wardrobe.errors import WardrobeError
from wardrobe.models.heads import head_linear, set_head
from wardrobe.models.levels import use_levels
from wardrobe.models.registry import build_network

FORMAT = "wardrobe-model"
FORMAT_VERSION = 1
# Tensors that travel in the model file beside the network's weights (the unknown-photo detector's
# training embeddings); their names start with this, which no network parameter does.
EXTRA_PREFIX = "wardrobe:"
MODEL_FILENAME = "model.safetensors"


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict:
    return {p: _version(p) for p in ("wardrobe", "torch", "torchvision", "timm", "onnxruntime")} | {
        "python": platform.python_version()}


def build_classifier(arch: str, num_classes: int, head: str = "linear", levels: int = 0) -> torch.nn.Module:
    """``levels``: the head also sees the pooled outputs of the last N block stages (models/levels.py)."""
    return set_head(use_levels(build_network(arch, 0), levels), num_classes, head)


def save_model(path: str | Path, model: torch.nn.Module, meta: dict, extras: dict | None = None) -> Path:
    """Write a model file: the network's weights and its description (``meta``: arch, classes,
    preprocess, and whatever else the training mode records), with the format and versions added."""
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / MODEL_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": package_versions(), **meta}
    for required in ("arch", "classes", "preprocess"):
        if required not in full:
            raise ValueError(f"model metadata needs '{required}'")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    state.update({EXTRA_PREFIX + k: torch.as_tensor(v).contiguous() for k, v in (extras or {}).items()})
    _write(path, state, full)
    return path


def load_extras(path: str | Path) -> dict[str, torch.Tensor]:
    """The extra tensors of a model file (see EXTRA_PREFIX), without loading its network."""
    path = resolve_model_path(path)
    with safe_open(str(path), framework="pt") as f:
        return {k[len(EXTRA_PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(EXTRA_PREFIX)}


def update_meta(path: str | Path, changes: dict) -> Path:
    """Rewrite a model file's description with ``changes`` (calibration's temperature, say); the
    weights are copied unchanged."""
    path = resolve_model_path(path)
    meta = read_meta(path)
    meta.update(changes)
    _write(path, load_file(str(path)), meta)
    return path


def _write(path: Path, state: dict, meta: dict) -> None:
    # beside the file and renamed over it: an interrupted write never leaves half a model file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata={"wardrobe": json.dumps(meta)})
    tmp.replace(path)


def resolve_model_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / MODEL_FILENAME
        if not candidate.is_file():
            raise WardrobeError(f"{path}: no {MODEL_FILENAME} in this folder (is it a wardrobe run folder?)")
        return candidate
    if not path.is_file():
        raise WardrobeError(f"{path}: model file not found")
    return path


def read_meta(path: str | Path) -> dict:
    path = resolve_model_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("wardrobe")
    except (SafetensorError, OSError, ValueError, Exception) as exc:  # noqa: BLE001 - any parse failure means "not ours"
        if isinstance(exc, WardrobeError):
            raise
        raise WardrobeError(f"{path}: not a wardrobe model file (cannot read it as safetensors)") from None
    if not raw:
        raise WardrobeError(f"{path}: not a wardrobe model file (no wardrobe metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise WardrobeError(f"{path}: damaged wardrobe model file (metadata is not JSON)") from None
    if meta.get("format") != FORMAT:
        raise WardrobeError(f"{path}: not a wardrobe model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise WardrobeError(f"{path}: damaged wardrobe model file (format_version {version!r} is not a whole number)")
    if not isinstance(meta.get("classes"), list) or not all(isinstance(c, str) for c in meta["classes"]):
        raise WardrobeError(f"{path}: damaged wardrobe model file (its class list is not a list of names)")
    if version != FORMAT_VERSION:
        made_by = (meta.get("versions") or {}).get("wardrobe", "?")
        raise WardrobeError(f"{path}: model file format {version} (made by wardrobe {made_by}) is not supported by "
                            f"this wardrobe ({_version('wardrobe')}, format {FORMAT_VERSION}); "
                            "use a matching wardrobe version or retrain")
    return meta


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict]:
    path = resolve_model_path(path)
    meta = read_meta(path)
    levels = meta.get("levels", 0)
    if not isinstance(levels, int) or isinstance(levels, bool) or not 0 <= levels <= 16:
        raise WardrobeError(f"{path}: damaged wardrobe model file (levels {levels!r} is not a small whole number)")
    model = build_classifier(meta["arch"], len(meta["classes"]), meta.get("head", "linear"), levels)
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith(EXTRA_PREFIX)}
    check_weights(path, model, state, meta)
    model.load_state_dict(state)
    return model.eval(), meta


def check_weights(path: Path, model: torch.nn.Module, state: dict, meta: dict) -> None:
    """One line naming the first tensors that differ when a file's weights do not fit the network
    its metadata describes (a class list edited apart from the head, another architecture...)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise WardrobeError(f"{path}: weights do not match architecture {meta['arch']} ({len(missing)} missing, "
                            f"{len(unexpected)} unexpected tensors, first: {(missing + unexpected)[0]})")
    for name, t in expected.items():
        if state[name].shape != t.shape:
            hint = (f"; its class list has {len(meta['classes'])} classes" if name.startswith(_head_prefixes(model))
                    else "")
            raise WardrobeError(f"{path}: weights do not match the model it describes: {name} is "
                                f"{tuple(state[name].shape)}, expected {tuple(t.shape)}{hint}")


def _head_prefixes(model: torch.nn.Module) -> tuple[str, ...]:

    head = head_linear(model)
    return tuple(n for n, m in model.named_modules() if m is head and n) or ("classifier", "fc", "head")
