"""Training augmentation: presets, every knob on its own, built from torchvision's v2 transforms.

The pipeline runs in DataLoader workers on uint8 tensors from the pixel cache and ends with the
model's normalisation, so the training loop receives ready float batches.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import v2

from wardrobe.training.knobs import Augment
from wardrobe.transforms import Preprocess, shape_for


class Degrade(torch.nn.Module):
    """With probability ``p``, one degradation a shop's photos suffer: sensor noise, blur or JPEG
    recompression, at a random strength. Training on a share of degraded photos (not all of them:
    all-noisy training cost 5.6 clean points, docs/benchmarks.md) keeps accuracy on such photos."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # uint8 CHW
        if self.p <= 0 or torch.rand(()) >= self.p:
            return img
        kind = int(torch.randint(3, ()))
        if kind == 0:
            sigma = float(torch.empty(()).uniform_(0.03, 0.15)) * 255
            return (img.float() + torch.randn(img.shape) * sigma).clamp(0, 255).round().to(torch.uint8)
        if kind == 1:
            s = float(torch.empty(()).uniform_(0.5, 2.0))
            return v2.functional.gaussian_blur(img, [2 * round(2 * s) + 1] * 2, [s, s])
        return v2.functional.jpeg(img, int(torch.randint(15, 61, ())))


_GREY = torch.tensor([0.299, 0.587, 0.114])  # torchvision's rgb_to_grayscale weights


def hue_rotation(theta: float) -> torch.Tensor:
    """A rotation of RGB space about its grey axis by ``theta`` radians: the linear hue shift of CSS's
    and SVG's hue-rotate. Greys stay put; pure colours move round the hue circle."""
    c, s, k, r = math.cos(theta), math.sin(theta), 1 / 3, math.sqrt(1 / 3)
    a, p, m = c + (1 - c) * k, k * (1 - c) + r * s, k * (1 - c) - r * s
    return torch.tensor([[a, m, p], [p, a, m], [m, p, a]])


class ColorMatrixJitter(torch.nn.Module):
    """torchvision's ColorJitter (brightness, contrast, saturation, hue) as one 3x3 colour matrix and an
    offset, applied in one pass. torchvision's hue goes through HSV and back, 1.8 of the 2.3 ms its
    jitter takes per 224 px photo; a rotation about the grey axis shifts hue alike, and the whole
    jitter then costs about 0.3 ms (docs/benchmarks.md, session 33). The adjustments are applied in a
    fixed order (brightness, contrast, saturation, hue) with one clamp at the end; torchvision shuffles
    the order and clamps after each, which at these strengths moves a pixel by about one level."""

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float):
        super().__init__()
        self.b, self.c, self.s, self.h = brightness, contrast, saturation, hue

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # uint8 CHW
        def factor(x: float) -> float:
            return float(torch.empty(()).uniform_(max(0.0, 1 - x), 1 + x))

        b, c, s = factor(self.b), factor(self.c), factor(self.s)
        hue = hue_rotation(float(torch.empty(()).uniform_(-self.h, self.h)) * 2 * math.pi)
        x = img.reshape(3, -1).float()
        # contrast blends towards the brightened photo's mean grey, saturation towards each pixel's grey
        mean_grey = float(_GREY @ x.mean(dim=1)) * b
        sat = s * torch.eye(3) + (1 - s) * _GREY.expand(3, 3)
        m = hue @ sat
        offset = m @ torch.full((3,), (1 - c) * mean_grey)
        out = torch.addmm(offset[:, None], m * (b * c), x)
        return out.clamp_(0, 255).round_().to(torch.uint8).reshape(img.shape)


class GrowingCrop(v2.RandomResizedCrop):
    """A random-resized crop whose output size can change between epochs (progressive resizing). The
    size lives in a shared-memory tensor, so DataLoader worker processes, persistent ones included,
    see a change made in the training process."""

    def __init__(self, size, **kwargs):
        self._hw = torch.zeros(2, dtype=torch.int32).share_memory_()
        super().__init__(size, **kwargs)

    @property
    def size(self) -> list[int]:
        return self._hw.tolist()

    @size.setter
    def size(self, hw) -> None:
        self._hw.copy_(torch.as_tensor(list(hw), dtype=torch.int32))


def progressive_sides(start: int, end: int, epochs: int, ramp: int) -> list[int]:
    """The training crops' side for each of ``epochs`` epochs: from ``start`` up to ``end`` by epoch
    ``ramp`` (0-based; ``end`` from there on), in steps of 16 pixels so that few input sizes occur
    (the frozen stages export one ONNX Runtime graph per size)."""
    ramp = max(1, min(ramp, epochs))
    sides = []
    for e in range(epochs):
        side = start + (end - start) * e / ramp
        sides.append(end if e >= ramp else min(end, max(start, 16 * round(side / 16))))
    return sides


def train_transform(aug: Augment, pre: Preprocess, size: int | None = None, growing: bool = False) -> v2.Compose:
    """uint8 CHW (the cache's canvas) -> normalised float CHW ``size`` high (default pre.input_size),
    at the input's aspect. A random crop of area s shows objects sqrt(s) times larger than the centre
    crop does, so training below the test size keeps apparent sizes equal (Touvron et al., FixRes).
    ``growing``: the crop is a GrowingCrop, whose size progressive resizing sets each epoch."""
    hw = list(shape_for(size or pre.input_size, pre.aspect))
    ops: list = []
    if aug.crop_scale < 1:
        # torchvision's default shapes of crop (3:4 to 4:3) around the canvas's own, so that a crop is
        # as often wider as narrower than the input it is resized to.
        ratio = (pre.aspect * 3 / 4, pre.aspect * 4 / 3)
        crop = GrowingCrop if growing else v2.RandomResizedCrop
        ops.append(crop(hw, scale=(aug.crop_scale, 1.0), ratio=ratio, antialias=True))
    else:
        ops.append(v2.CenterCrop(list(pre.hw)))  # the test view...
        if hw != list(pre.hw):
            ops.append(v2.Resize(hw, antialias=True))  # ...shown smaller, not a smaller cut of it
    if aug.hflip:
        ops.append(v2.RandomHorizontalFlip(aug.hflip))
    if aug.rotation:
        ops.append(v2.RandomRotation(aug.rotation, fill=255))  # white, like a product photo's background
    if aug.color_jitter:
        c = aug.color_jitter
        ops.append(ColorMatrixJitter(brightness=c, contrast=c, saturation=c, hue=min(0.5, c / 4)))
    if aug.randaugment_n:
        ops.append(v2.RandAugment(num_ops=aug.randaugment_n, magnitude=aug.randaugment_m))
    if aug.degrade:
        ops.append(Degrade(aug.degrade))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if aug.noise:
        ops.append(v2.GaussianNoise(sigma=aug.noise, clip=True))
    ops.append(v2.Normalize(list(pre.mean), list(pre.std)))
    if aug.erasing:
        ops.append(v2.RandomErasing(aug.erasing, value=0))
    return v2.Compose(ops)


def eval_transform(pre: Preprocess) -> v2.Compose:
    """The cache canvas is the photo resized to pre.canvas_hw (centre-cropped to it); its centre crop
    at the input's size is exactly the inference preprocessing."""
    return v2.Compose([v2.CenterCrop(list(pre.hw)), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(pre.mean), list(pre.std))])
