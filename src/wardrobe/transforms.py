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


def shape_for(height: int, aspect: float) -> tuple[int, int]:
    """(height, width) of an input this high at this width-over-height ratio."""
    return int(height), max(1, round(height * aspect))


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
    # The input's width over its height: 1 is square, 0.75 a 3:4 portrait (input_size is the height).
    aspect: float = 1.0

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be 'crop' or 'squash', not {self.resize_mode!r}")
        if self.interpolation not in _INTERP:
            raise ValueError(f"interpolation must be one of {sorted(_INTERP)}")
        if not 0.25 <= self.aspect <= 4:
            raise ValueError(f"aspect (width / height) must be between 0.25 and 4, not {self.aspect}")

    @property
    def resize_to(self) -> int:
        """The canvas height (before the centre crop); the decoder's smallest useful side."""
        return self.input_size if self.resize_mode == "squash" else int(math.floor(self.input_size / self.crop_pct))

    @property
    def hw(self) -> tuple[int, int]:
        """The input's (height, width) in pixels."""
        return shape_for(self.input_size, self.aspect)

    @property
    def canvas_hw(self) -> tuple[int, int]:
        """The (height, width) the photo is resized to before the centre crop: the pixel cache's rows."""
        return shape_for(self.resize_to, self.aspect)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.aspect == 1.0:
            del d["aspect"]  # square inputs keep the dict (cache keys, model files) of before aspect existed
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)

    def pixels(self, img: Image.Image) -> torch.Tensor:
        """Resize and crop an RGB photo into a uint8 CHW tensor of the input's height x width."""
        interp = _INTERP[self.interpolation]
        if self.resize_mode == "squash":
            img = F.resize(img, list(self.hw), interpolation=interp, antialias=True)
        elif self.aspect != 1.0:
            # The smallest resize that covers the canvas, then the canvas and the input, both centred.
            ch, cw = self.canvas_hw
            scale = max(ch / img.height, cw / img.width)
            size = [max(ch, round(img.height * scale)), max(cw, round(img.width * scale))]
            img = F.resize(img, size, interpolation=interp, antialias=True)
            img = F.center_crop(F.center_crop(img, [ch, cw]), list(self.hw))
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
