"""The fast path of fine-tuning on a CPU: the leading stages that stay frozen for the whole run are
a fixed function, so they run in ONNX Runtime (no autograd, batch-norm folded, blocked layouts);
the trainable rest runs in PyTorch (fp32: bf16 autocast did not pay, not even with AMX,
docs/benchmarks.md, sessions 14 and 25).

Measured with bench/train_speed.py (README design notes): the frozen stem and early block stages
hold most of an EfficientNet-Lite forward pass at full resolution, and ONNX Runtime runs them
several times faster than eager PyTorch.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from wardrobe.models.levels import first_level_stage, forward_levels_from
from wardrobe.models.runtime import OnnxModule, resolve_runtime
from wardrobe.models.stages import stage_modules
from wardrobe.ui import warn


def frozen_prefix_length(model: nn.Module, trainable: list[nn.Module]) -> int:
    """How many leading block stages (after the stem) are frozen throughout; -1 when the stem itself
    trains or the network has no timm ``blocks`` (then there is no prefix to split off)."""
    if not (hasattr(model, "blocks") and isinstance(model.blocks, nn.Sequential) and hasattr(model, "conv_stem")):
        return -1
    active = {id(p) for m in trainable for p in m.parameters()}
    stages = stage_modules(model)
    n = 0
    for stage in stages[:-1]:  # the last is the head convolution, which always follows the blocks
        if any(id(p) in active for p in stage.parameters()):
            break
        n += 1
    return n - 1  # stage 0 is the stem


class _Prefix(nn.Module):
    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.stem = nn.Sequential(model.conv_stem, model.bn1)
        self.blocks = model.blocks[:k]

    def forward(self, x):
        return self.blocks(self.stem(x))


class FrozenPrefix:
    """Runs ``conv_stem, bn1, blocks[:k]`` of a frozen timm network in ONNX Runtime, one exported
    graph per input size (training crops and validation may differ). Not an nn.Module on purpose:
    it holds no weights of its own, the network's state dict stays the network's."""

    def __init__(self, model: nn.Module, k: int, threads: int | None = None):
        self.model, self.k = model, k
        self.onnx = OnnxModule(_Prefix(model, k), ("features",), threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.onnx(x)[0]).contiguous(memory_format=torch.channels_last)


def forward_rest(model: nn.Module, feats: torch.Tensor, k: int) -> torch.Tensor:
    """The network from block stage ``k`` on, given the prefix's output: timm EfficientNet's
    forward_features after the blocks it skips, then its head."""
    if getattr(model, "wardrobe_levels", 0):
        return model.forward_head(forward_levels_from(model, feats, k))
    x = model.blocks[k:](feats)
    x = model.bn2(model.conv_head(x))
    return model.forward_head(x)


def _onnx_fast_path(fast: str) -> bool:
    """Whether frozen or finished networks run in ONNX Runtime: on a CPU with it installed, unless
    WARDROBE_FAST_PATH=off."""
    return fast != "off" and resolve_runtime("auto") == "onnx"


def make_prefix(model: nn.Module, trainable: list[nn.Module], fast: str = "auto") -> FrozenPrefix | None:
    """The ONNX Runtime prefix for this run, or None (fast path off, nothing frozen, no ONNX
    Runtime, a GPU, or a network without timm stages)."""
    if not _onnx_fast_path(fast):
        return None
    k = frozen_prefix_length(model, trainable)
    if getattr(model, "wardrobe_levels", 0):
        k = min(k, first_level_stage(model))  # a tapped stage's output must be seen in PyTorch
    if k < 0:
        return None
    try:
        return FrozenPrefix(model, k)
    except Exception as exc:  # noqa: BLE001 - any exporter failure: the plain path still trains
        warn(f"the frozen stages could not run in ONNX Runtime ({str(exc).splitlines()[0][:120]}); "
             "training in PyTorch alone")
        return None


class FinishedNetwork:
    """A trained network's passes over photos after training (validation scores, the training photos'
    embeddings): the whole network in ONNX Runtime when the fast path is on, eager PyTorch otherwise
    or when the export fails. Calls return a list of numpy arrays, one per output."""

    def __init__(self, net: nn.Module, outputs: int = 1, fast: str = "auto"):
        self.net, self.outputs = net, outputs
        self.onnx = OnnxModule(net, tuple(f"output{i}" for i in range(outputs))) \
            if _onnx_fast_path(fast) else None

    def __call__(self, x: torch.Tensor) -> list:
        if self.onnx is not None:
            try:
                return self.onnx(x)
            except Exception as exc:  # noqa: BLE001 - any exporter failure: PyTorch still runs the network
                warn(f"the trained network could not run in ONNX Runtime ({str(exc).splitlines()[0][:120]}); "
                     "scoring in PyTorch")
                self.onnx = None
        with torch.inference_mode():
            out = self.net(x.contiguous(memory_format=torch.channels_last))
        return [o.float().numpy() for o in (out if self.outputs > 1 else (out,))]


def env_fast_path() -> str:
    return os.environ.get("WARDROBE_FAST_PATH", "auto")
