"""Pretrained weights from a file a user copied in, or from a local Hugging Face cache: the weight
sources of air-gapped machines. Files are read as tensors only (safetensors, or ``torch.load``
with ``weights_only=True``): a file carrying code is refused, never run."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from wardrobe.errors import WardrobeError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_file(path: str | Path) -> Path:
    """The weights file PATH names: the file itself, or a folder laid out as the hub writes it
    (model.safetensors or pytorch_model.bin beside config.json)."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = next((p / n for n in HUB_FILES if (p / n).is_file()), None)
        if found is None:
            raise WardrobeError(f"--weights {p}: no {' or '.join(HUB_FILES)} in this folder")
        return found
    if not p.is_file():
        raise WardrobeError(f"--weights {p}: no such file or folder")
    if p.suffix.lower() not in WEIGHT_SUFFIXES:
        raise WardrobeError(f"--weights {p}: not a weights file ({', '.join(WEIGHT_SUFFIXES)}, or a hub folder)")
    return p


def torch_load_tensors(path: Path, what: str, kind: str, hint: str):
    """``torch.load(weights_only=True)``: tensors and plain containers only. A file carrying code
    is refused in one line, never run; a damaged one is one line too."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise WardrobeError(f"{what}: refused: it holds Python objects, not only tensors (loading it could run "
                                f"code); {hint}") from None
        raise WardrobeError(f"{what}: not a readable {kind} (corrupt or not a PyTorch file)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, zipfile errors... on junk
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise WardrobeError(f"{what}: not a readable {kind} ({reason})") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a weights file; one line for anything else."""
    if path.suffix.lower() != ".safetensors":
        state = torch_load_tensors(path, f"--weights {path}", "weights file",
                                   "save the state_dict, or convert it to .safetensors")
    else:
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WardrobeError(f"--weights {path}: not a readable weights file ({str(exc)[:120]})") from None
    for key in ("state_dict", "model", "model_state_dict"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WardrobeError(f"--weights {path}: no tensors by name in this file")
    return {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel/DDP


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` (already without its classifier): keys pass through timm's own
    checkpoint filter for the architecture (original-repository layouts), every backbone tensor must
    then be there with its shape, and a classifier in the file is dropped (the user's classes get a
    new head)."""
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception:  # noqa: BLE001 - a filter written for other layouts: the keys are checked below
            pass
    target = model.state_dict()
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    head = tuple(f"{c}." for c in ((classifier,) if isinstance(classifier, str) else classifier))
    state = {k: v for k, v in state.items() if k in target or not k.startswith(head)}
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in target if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        first = (missing + unexpected + wrong)[:3]
        raise WardrobeError(f"{source}: does not fit {type(model).__name__} ({len(missing)} missing, "
                            f"{len(unexpected)} unexpected, {len(wrong)} of another shape; first: {', '.join(first)})")
    model.load_state_dict(state)


def hub_cache_revision(hf_hub_id: str) -> str | None:
    """The snapshot revision of a model in the local Hugging Face cache (HF_HOME), if it is there."""
    home = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" /
                                                                      "huggingface")) / "hub")
    repo = home / ("models--" + hf_hub_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    rev = ref.read_text().strip()
    snapshot = repo / "snapshots" / rev
    return rev if any((snapshot / n).is_file() for n in HUB_FILES) else None


def hub_folder_config(path: Path) -> dict:
    """config.json beside a hub-style weights file ({} when there is none)."""
    cfg = path.parent / "config.json"
    try:
        return json.loads(cfg.read_text()) if cfg.is_file() else {}
    except (OSError, ValueError):
        return {}
