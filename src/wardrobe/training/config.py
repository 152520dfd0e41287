"""Every option of fine-tuning and training from scratch, and the named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from wardrobe.errors import WardrobeError
from wardrobe.training.augment import Augment, resolve_augment
from wardrobe.training.losses import LOSSES

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "onecycle", "plateau", "none")
SAMPLERS = ("none", "balanced")


@dataclass
class FitConfig:
    mode: str = "finetune"  # finetune | scratch
    model: str = "efficientnet_lite0"
    image_size: int | None = None  # default: the model's own (scratch: 224)
    train_size: int | None = None  # random crops at this size (default image_size); evaluation stays at image_size
    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    scheduler: str = "onecycle"
    warmup_epochs: float = 0.3
    label_smoothing: float = 0.1
    loss: str = "ce"
    focal_gamma: float = 2.0
    sampler: str = "none"
    balance: int | None = None  # resample every class to N photos per epoch
    trainable: str = "all"  # all | head | last:N (stages)
    head_epochs: int = 0  # two-stage: head only for this many epochs, then `trainable`
    backbone_lr_mult: float = 1.0
    patience: int | None = None  # early stopping on validation macro-F1
    augment: Augment = field(default_factory=lambda: resolve_augment("standard"))
    drop_rate: float = 0.2
    drop_path: float = 0.0  # stochastic depth (timm networks)
    ema: float | None = None  # decay of an exponential moving average of the weights, which is then the model
    devices: int | str = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    workers: int | None = None
    use_pixel_cache: bool = True
    overfit_gap: float = 0.15  # warn when train accuracy exceeds validation accuracy by this much
    max_minutes: float | None = None  # stop training after this wall time (then keep the best epoch)
    seed: int = 0

    def validate(self) -> "FitConfig":
        checks = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "sampler": SAMPLERS, "loss": LOSSES,
                  "mode": ("finetune", "scratch")}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise WardrobeError(f"--{name.replace('_', '-')} {getattr(self, name)}: use one of {', '.join(allowed)}")
        if self.trainable not in ("all", "head") and not (self.trainable.startswith("last:")
                                                          and self.trainable[5:].isdigit()):
            raise WardrobeError(f"--trainable {self.trainable}: use all, head or last:N")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise WardrobeError("--epochs, --batch-size and --lr must be positive")
        if not 0 <= self.drop_path < 1:
            raise WardrobeError(f"--drop-path {self.drop_path}: must be in [0, 1)")
        if self.ema is not None and not 0 < self.ema < 1:
            raise WardrobeError(f"--ema {self.ema}: the decay must be in (0, 1), e.g. 0.99")
        if self.train_size is not None and self.train_size < 16:
            raise WardrobeError(f"--train-size {self.train_size}: must be at least 16 pixels")
        if self.head_epochs >= self.epochs:
            raise WardrobeError(f"--head-epochs {self.head_epochs} must be fewer than --epochs {self.epochs}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


# The strongest recipe found that fits in 30 minutes on 2 CPU cores (docs/benchmarks.md).
# EfficientNet-Lite1 at its native 240 px because its frozen embeddings beat Lite0's; the stem and
# the first three block stages (generic edges and textures) stay frozen so that a step is cheap
# enough for 6 epochs in the budget; the moving average of the weights (decay 0.99: about the last
# epoch's steps) is steadier from one validation to the next than the raw weights.
BEST = FitConfig(mode="finetune", model="efficientnet_lite1", epochs=6, batch_size=32, optimizer="adamw",
                 lr=1e-3, weight_decay=0.02, scheduler="onecycle", warmup_epochs=1.0, label_smoothing=0.1,
                 trainable="last:5", drop_rate=0.2, ema=0.99,
                 augment=resolve_augment("light", crop_scale=0.5, color_jitter=0.1), max_minutes=27)

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
