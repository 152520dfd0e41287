"""Preprocessing: how a decoded photo becomes the network's input.

Workers produce uint8 tensors (4x less to pass between processes and to cache than float32);
normalisation happens on the whole batch in the main process.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

_INTERP = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
           "nearest": InterpolationMode.NEAREST}


RESIZE_MODES = ("crop", "squash")


@dataclass(frozen=True)
class Preprocess:
    input_size: int = 224
    # "crop": shorter side to input_size / crop_pct, then a centre crop (timm's eval default);
    # "squash": the whole photo resized to a square, nothing cut off.
    resize_mode: str = "crop"
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be 'crop' or 'squash', not {self.resize_mode!r}")
        if self.interpolation not in _INTERP:
            raise ValueError(f"interpolation must be one of {sorted(_INTERP)}")

    @property
    def resize_to(self) -> int:
        return self.input_size if self.resize_mode == "squash" else int(math.floor(self.input_size / self.crop_pct))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)

    def pixels(self, img: Image.Image) -> torch.Tensor:
        """Resize and crop an RGB photo into a uint8 CHW tensor of input_size x input_size."""
        interp = _INTERP[self.interpolation]
        if self.resize_mode == "squash":
            img = F.resize(img, [self.input_size, self.input_size], interpolation=interp, antialias=True)
        else:
            img = F.resize(img, self.resize_to, interpolation=interp, antialias=True)
            # Two centre crops, as the training pixel cache does (square canvas, then the input): one
            # crop would round its offset differently by a pixel, and that pixel moved the fine-tuned
            # Lite1's validation accuracy by 0.9 points between `train` and `evaluate`.
            img = F.center_crop(img, [self.resize_to, self.resize_to])
            img = F.center_crop(img, [self.input_size, self.input_size])
        return F.pil_to_tensor(img)

    def normalize_array(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NCHW array -> float32 normalised NCHW, in NumPy (see Classifier.probs_from_pixels for why);
        the same float32 values as normalize(). In place after one copy: each fresh 600 kB
        temporary costs page faults on every call."""
        out = batch.astype(np.float32)
        out -= np.asarray(self.mean, dtype=np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
        out /= np.asarray(self.std, dtype=np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
        return out

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float32 normalised NCHW."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        return (batch.to(torch.float32) - mean) / std
