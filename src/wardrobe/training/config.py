"""Every option of fine-tuning and training from scratch, and the named presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING

from wardrobe.data.shapes import parse_aspect
from wardrobe.errors import WardrobeError
from wardrobe.training.knobs import Augment, flag, resolve_augment

if TYPE_CHECKING:
    from wardrobe.transforms import Preprocess

LOSSES = ("ce", "weighted_ce", "balanced", "focal")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "onecycle", "swa", "plateau", "none")
SAMPLERS = ("none", "balanced", "sqrt", "root4", "auto")
# A class's share of a sampler's draws is proportional to its training count to this power.
SAMPLER_EXPONENTS = {"none": 1.0, "sqrt": 0.5, "root4": 0.25, "balanced": 0.0}
HEAD_INITS = ("random", "probe")
# The largest training class over the smallest from which data counts as long-tailed (--sampler
# auto draws by square root, the best preset adjusts logits): the long-tailed benchmarks start at
# 10 (CIFAR-LT uses 10 to 200). clothing-17's is 47 and both won there; clothing-top10's is 7 and
# its preset was tuned without them (docs/benchmarks.md).
LONG_TAIL_RATIO = 10
RESIZE_MODES = ("crop", "squash")  # transforms.RESIZE_MODES, not imported: the CLI starts without torch


def equal_area_height(side: int, aspect: float) -> int:
    """The height of an input shaped ``aspect`` (width / height) with about the area of a ``side``
    square (277 at 3:4: 320 x 240 px)."""
    return round(side / math.sqrt(aspect))


def fit_flag(default, help: str):
    """A FitConfig field that is also a flag of `wardrobe train` (and cv, compare)."""
    return flag(default, help, panel="Training (finetune / scratch)")


@dataclass
class FitConfig:
    mode: str = "finetune"  # finetune | scratch
    model: str = "efficientnet_lite0"
    weights: str | None = None  # a weights file or hub-style folder instead of the model's own source
    image_size: int | None = fit_flag(None, "Input size in pixels (default: the model's).")
    train_size: int | None = fit_flag(None, "Train on random crops of this size (default: --image-size); smaller is "
                                            "faster and, with random-resized crops, matches object sizes at test (FixRes).")
    progressive: int | None = fit_flag(None, "Progressive resizing: the training crops start this many pixels high "
                                             "and grow to --train-size by the epoch the weight average starts "
                                             "(half-way without one); early epochs cost less.")
    aspect: str | None = fit_flag(None, "The input's shape: width:height (3:4, or 0.75) or auto (the training "
                                        "photos' usual shape); --image-size and --train-size then give the side "
                                        "of a square of the same area, so a step costs the same (default: square).")
    resize: str = fit_flag("crop", "How a photo becomes a square: crop (shorter side, then the centre square; "
                                   "timm's default) or squash (the whole photo, nothing cut off).")
    epochs: int = fit_flag(5, "Training epochs.")
    batch_size: int = 32
    optimizer: str = fit_flag("adamw", "adamw or sgd.")
    lr: float = fit_flag(1e-3, "Peak learning rate of the head.")
    weight_decay: float = fit_flag(0.05, "Weight decay.")
    momentum: float = 0.9
    scheduler: str = fit_flag("onecycle", "onecycle, cosine (with warm-up), swa (cosine to 0.2 x the "
                                                   "peak where --average-from starts the weight average, "
                                                   "half-way without one, then held), plateau or none.")
    warmup_epochs: float = fit_flag(0.3, "Warm-up of one-cycle, cosine and swa, in epochs.")
    label_smoothing: float = fit_flag(0.1, "Label smoothing of the cross-entropy.")
    loss: str = fit_flag("ce", "ce, weighted_ce (class-weighted), balanced (balanced softmax) or focal.")
    logit_adjust: bool = fit_flag(False, "After training, subtract tau x log(class prior) from the logits, tau "
                                         "chosen on validation for macro-F1 (helps rare classes).")
    adjust_min_ratio: float = fit_flag(0.0, "With --logit-adjust: adjust only when the largest training class has at "
                                            "least this many times the photos of the smallest (the best preset: 10).")
    focal_gamma: float = fit_flag(2.0, "Focusing parameter of the focal loss.")
    self_distill: float = fit_flag(0.0, "Progressive self-distillation (PS-KD): each training photo's target mixes "
                                        "its label with the network's own last prediction for it, that share "
                                        "growing from 0 to this by the end of training (e.g. 0.8; 0: labels "
                                        "alone). Softens labels the network keeps finding ambiguous; ce loss only.")
    sampler: str = fit_flag("none", "none, balanced (each class equally likely), sqrt (a class drawn in "
                                     "proportion to the square root of its count), root4 (the fourth root) or "
                                     "auto (sqrt when the largest class has 10x the photos of the smallest).")
    balance: int | None = fit_flag(None, "Resample every class to N photos per epoch.")
    trainable: str = fit_flag("all", "all, head, or last:N backbone stages.")
    head_epochs: int = fit_flag(0, "Two-stage: train the head alone for N epochs first.")
    head_init: str = fit_flag("random", "random, or probe: the head starts from a logistic regression on the "
                                        "pretrained network's embeddings of the training photos (LP-FT).")
    # the head also sees the pooled outputs of the last N block stages (models/levels.py); None: the
    # probe's default where the network supports it, else 0
    levels: int | None = 0
    backbone_lr_mult: float = fit_flag(1.0, "Backbone LR = head LR x this.")
    l2sp: float = fit_flag(0.0, "Pull the backbone's weights towards their pretrained values with this decoupled "
                                "decay (L2-SP, e.g. 1.0) instead of decaying them towards zero; the head keeps "
                                "--weight-decay.")
    layer_decay: float = fit_flag(1.0, "Layer-wise LR decay: each backbone stage learns at this times the LR of "
                                       "the stage above it (e.g. 0.7), so the early stages move least.")
    head_refit: float = fit_flag(0.0, "After fine-tuning, mix into the head a logistic regression fitted on the "
                                      "finished network's embeddings of the training photos, with this weight "
                                      "(the best preset: 0.25); folded into the head, so exports carry it.")
    patience: int | None = fit_flag(None, "Early stopping: epochs without a better validation macro-F1.")
    augment: Augment = field(default_factory=lambda: resolve_augment("standard"))
    freeze_bn: bool = fit_flag(False, "Batch-norm layers keep their pretrained statistics (scale and shift still "
                                      "train): steadier with small batches and with --train-size below the test size.")
    freeze_depthwise: bool = fit_flag(False, "The depthwise convolutions' kernels keep their pretrained values in the "
                                             "stages that train (their weight gradient is most of a CPU backward "
                                             "pass; the pointwise convolutions, batch-norm and head still train).")
    drop_rate: float = 0.2
    drop_path: float = fit_flag(0.0, "Stochastic depth rate (timm networks).")
    ema: float | None = fit_flag(None, "Keep an exponential moving average of the weights with this decay per step "
                                       "(e.g. 0.99); it is validated and saved instead of the raw weights.")
    ema_long_tail: float | None = fit_flag(None, "With --ema: the decay instead when the classes are long-tailed "
                                                 f"(the largest training class {LONG_TAIL_RATIO}x the smallest or "
                                                 "more; the best preset: 0.995).")
    average_from: float | None = fit_flag(None, "Also average the weights of every epoch after this fraction of the "
                                                "epochs (0.5: the second half) and make that average the model, "
                                                "instead of the epoch that scored best on validation (1: no "
                                                "average).")
    average_below_ratio: float | None = fit_flag(None, "With --average-from: average only when the largest training "
                                                       "class has fewer than this many times the smallest's photos, "
                                                       "else keep the best epoch (default: always average).")
    devices: int | str = fit_flag(1, "Devices (or processes on CPU) for Lightning.")
    strategy: str = fit_flag("auto", "Lightning strategy, e.g. ddp.")
    accelerator: str = fit_flag("auto", "auto, cpu or gpu.")
    workers: int | None = None
    use_pixel_cache: bool = True
    overfit_gap: float = 0.15  # warn when train accuracy exceeds validation accuracy by this much
    max_minutes: float | None = fit_flag(None, "Stop after this wall time and keep the best epoch.")
    seed: int = 0

    def validate(self) -> "FitConfig":
        checks = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "sampler": SAMPLERS, "loss": LOSSES,
                  "mode": ("finetune", "scratch"), "head_init": HEAD_INITS}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise WardrobeError(f"--{name.replace('_', '-')} {getattr(self, name)}: use one of {', '.join(allowed)}")
        if self.trainable not in ("all", "head") and not (self.trainable.startswith("last:")
                                                          and self.trainable[5:].isdigit()):
            raise WardrobeError(f"--trainable {self.trainable}: use all, head or last:N")
        if self.resize not in RESIZE_MODES:
            raise WardrobeError(f"--resize {self.resize}: use {' or '.join(RESIZE_MODES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise WardrobeError("--epochs, --batch-size and --lr must be positive")
        if not 0 <= self.drop_path < 1:
            raise WardrobeError(f"--drop-path {self.drop_path}: must be in [0, 1)")
        if not 0 <= self.l2sp < 100:
            raise WardrobeError(f"--l2sp {self.l2sp}: must be in [0, 100), e.g. 1.0 (0: decay towards zero)")
        if self.l2sp and self.mode != "finetune":
            raise WardrobeError("--l2sp needs pretrained weights to pull towards: use it with --mode finetune")
        if not 0 <= self.self_distill < 1:
            raise WardrobeError(f"--self-distill {self.self_distill}: must be in [0, 1), e.g. 0.8 (0: labels alone)")
        if self.self_distill and (self.loss != "ce" or self.augment.mix > 0):
            raise WardrobeError("--self-distill mixes soft targets into the plain cross-entropy: use it with --loss ce "
                                "and without MixUp / CutMix")
        if not 0 < self.layer_decay <= 1:
            raise WardrobeError(f"--layer-decay {self.layer_decay}: must be in (0, 1], e.g. 0.7 (1: none)")
        for name, decay in (("--ema", self.ema), ("--ema-long-tail", self.ema_long_tail)):
            if decay is not None and not 0 < decay < 1:
                raise WardrobeError(f"{name} {decay}: the decay must be in (0, 1), e.g. 0.99")
        if not 0 <= self.head_refit <= 1:
            raise WardrobeError(f"--head-refit {self.head_refit}: must be in [0, 1], e.g. 0.25 "
                                "(0: the trained head alone)")
        if self.average_from is not None and not 0 <= self.average_from <= 1:
            raise WardrobeError(f"--average-from {self.average_from}: must be in [0, 1], e.g. 0.5 (1: no average)")
        try:
            aspect = parse_aspect(self.aspect)
        except (ValueError, ZeroDivisionError):
            aspect = -1.0
        if aspect not in (None, "auto") and not 0.25 <= aspect <= 4:
            raise WardrobeError(f"--aspect {self.aspect}: use auto, width:height such as 3:4, or width / height "
                                "between 0.25 and 4")
        if self.train_size is not None and self.train_size < 16:
            raise WardrobeError(f"--train-size {self.train_size}: must be at least 16 pixels")
        full = self.train_size or self.image_size  # None: the model's own size, known once it is built
        if self.progressive is not None and (self.progressive < 16 or (full and self.progressive >= full)):
            raise WardrobeError(f"--progressive {self.progressive}: must be at least 16 pixels and below the "
                                f"training size{f' ({full})' if full else ''}")
        if self.progressive and self.augment.crop_scale >= 1:
            raise WardrobeError("--progressive grows random crops: use it with --crop-scale below 1")
        if self.head_init == "probe" and self.mode != "finetune":
            raise WardrobeError("--head-init probe needs a pretrained network: use it with --mode finetune")
        if self.head_epochs >= self.epochs:
            raise WardrobeError(f"--head-epochs {self.head_epochs} must be fewer than --epochs {self.epochs}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def view(self, pre: Preprocess, aspect: float = 1.0) -> Preprocess:
        """The network's own preprocessing at this run's --image-size and --resize, shaped ``aspect``
        (--aspect resolved: auto is the data's) with the area of the --image-size square."""
        height = equal_area_height(self.image_size or pre.input_size, aspect)
        return replace(pre, input_size=height, resize_mode=self.resize, aspect=aspect)

    def train_height(self, aspect: float = 1.0) -> int | None:
        """The training crops' height: --train-size's square, shaped ``aspect``."""
        return equal_area_height(self.train_size, aspect) if self.train_size else None


# The strongest recipe found that fits in 30 minutes on 2 CPU cores (docs/benchmarks.md).
# EfficientNet-Lite1 (its frozen embeddings beat Lite0's and Lite2's). The whole photo is squashed
# into the square: the centre square of a 3:4 garment photo cuts off a third of its height, and with
# it what tells a dress from a t-shirt or pants from shorts (session 17: 0.9384 vs 0.9355 at 240 px,
# and 17% faster). The squashed photo has less detail per garment, which 272 px gives back; training
# runs on 224 px random crops (FixRes: a random crop shows objects larger, so the smaller training
# size keeps their apparent size; 1.5x cheaper steps). A 3:4 input (320 x 240 px) keeps
# the garments' proportions and lifts the frozen features by 1.5 points, but fine-tuned it was within
# seed spread of the square on top-10 and behind it on a clothing-17 fold (session 32): the input
# stays square. The stem and first three block stages stay
# frozen and run in ONNX Runtime (training/frozen.py); batch-norm keeps its pretrained statistics,
# which also makes the train/test size gap harmless. A moving average of the weights is the model;
# a quarter of the photos are degraded so that noisy, blurred and recompressed photos keep their
# accuracy. The head also sees the last three block stages' pooled outputs (models/levels.py).
# On a long tail (largest class 10x the smallest or more) classes are drawn by the square root of
# their counts: rare ones get more steps without the frequent ones' photos going unseen (clothing-17
# 5-fold CV, session 20: macro-F1 0.808 -> 0.820, accuracy 0.889 -> 0.893; docs/benchmarks.md), logits
# are adjusted for the class prior, and the moving average has a shorter memory (0.995: 0.998 lost
# 1.6 points of macro-F1 there when the best epoch was kept, session 28). On every dataset the model is
# the mean of the weights of the second half of the epochs, a rule fixed before validation: choosing
# the best epoch on half of the validation photos lost on the other half (top-10, two seeds, session
# 23; clothing-17, three folds of one CV and the five folds of another regraded, session 34). On data
# closer to balance no sampler and no adjustment: the tau search, on half of clothing-top10's
# validation photos, picked 1.0 where 0 was right. After training, a logistic regression on the
# finished network's embeddings of the training photos is mixed into the head with weight 0.25
# (training/head_refit.py; clothing-17 CV +0.3 accuracy and +0.4 macro-F1 points, top-10 never worse
# on six runs, session 35).
BEST = FitConfig(mode="finetune", model="efficientnet_lite1", epochs=14, batch_size=32, optimizer="adamw",
                 lr=1e-3, weight_decay=0.02, scheduler="onecycle", warmup_epochs=1.0, label_smoothing=0.1,
                 trainable="last:5", resize="squash", image_size=272, train_size=224, freeze_bn=True,
                 freeze_depthwise=True, logit_adjust=True, adjust_min_ratio=LONG_TAIL_RATIO, sampler="auto",
                 drop_rate=0.2, ema=0.998, ema_long_tail=0.995, average_from=0.5, levels=None, max_minutes=27,
                 head_refit=0.25,
                 augment=resolve_augment("light", crop_scale=0.35, color_jitter=0.1, degrade=0.25))

TRAIN_PRESETS = {"fast": None, "best": BEST}  # fast = the probe


def fit_config(base: FitConfig | None = None, **overrides) -> FitConfig:
    cfg = replace(base) if base is not None else FitConfig()
    names = {f.name for f in fields(FitConfig)}
    for k, v in overrides.items():
        if k not in names:
            raise TypeError(f"unknown training option {k!r}")
        if v is not None:
            setattr(cfg, k, v)
    return cfg.validate()
