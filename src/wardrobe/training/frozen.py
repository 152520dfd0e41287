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
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wardrobe.models.levels import first_level_stage, forward_levels_from
from wardrobe.models.runtime import export_onnx, onnxruntime_available
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
        self.threads = threads or torch.get_num_threads()
        self.sessions: dict[tuple[int, int], object] = {}
        self.tmp = tempfile.TemporaryDirectory(prefix="wardrobe-prefix-")

    def _session(self, size: tuple[int, int]):
        if size not in self.sessions:
            import onnxruntime as ort  # heavy: ONNX Runtime, only when a run uses the fast path

            prefix = _Prefix(self.model, self.k).eval()
            path = export_onnx(prefix, size, Path(self.tmp.name) / f"prefix{size[0]}x{size[1]}.onnx", output_names=("features",))
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.intra_op_num_threads = self.threads
            self.sessions[size] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return self.sessions[size]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        sess = self._session((int(x.shape[-2]), int(x.shape[-1])))
        out = sess.run(None, {"pixels": np.ascontiguousarray(x.detach().float().numpy())})[0]
        return torch.from_numpy(out).contiguous(memory_format=torch.channels_last)


def forward_rest(model: nn.Module, feats: torch.Tensor, k: int) -> torch.Tensor:
    """The network from block stage ``k`` on, given the prefix's output: timm EfficientNet's
    forward_features after the blocks it skips, then its head."""
    if getattr(model, "wardrobe_levels", 0):
        return model.forward_head(forward_levels_from(model, feats, k))
    x = model.blocks[k:](feats)
    x = model.bn2(model.conv_head(x))
    return model.forward_head(x)


def make_prefix(model: nn.Module, trainable: list[nn.Module], fast: str = "auto") -> FrozenPrefix | None:
    """The ONNX Runtime prefix for this run, or None (fast path off, nothing frozen, no ONNX
    Runtime, a GPU, or a network without timm stages)."""
    if fast == "off" or torch.cuda.is_available() or not onnxruntime_available():
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


def env_fast_path() -> str:
    return os.environ.get("WARDROBE_FAST_PATH", "auto")
