"""An equal-weight average of the weights at the end of each epoch of the later part of training
(with --ema, of the moving averages, the weights each epoch validated). The moving average forgets
an epoch's weights within a few hundred steps; the mean over the second half of training is a
wider, flatter average (stochastic weight averaging, Izmailov et al. 2018) and, unlike the best
epoch, it is fixed before any validation photo is seen, so nothing is chosen on those photos."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch.optim.swa_utils import get_ema_avg_fn

from wardrobe.training.datamodule import imbalance_of
from wardrobe.ui import info


def long_tail_ratio(trainer, threshold: float | None) -> float | None:
    """The training classes' imbalance (largest over smallest) when it is ``threshold`` or more;
    None otherwise or without a threshold."""
    if threshold is None:
        return None
    ratio = imbalance_of(trainer.datamodule.train_counts)
    return ratio if ratio >= threshold else None


class EpochAverage(L.Callback):
    """Sums the weights at the end of every epoch after ``start`` (a fraction of the planned
    epochs); the sum travels in checkpoints, so --resume continues it."""

    def __init__(self, start: float, below_ratio: float | None = None):
        self.start, self.below_ratio = start, below_ratio
        self.sum: dict[str, torch.Tensor] = {}
        self.epochs: list[int] = []  # 1-based epochs in the sum
        self.off = False

    def on_train_start(self, trainer, module) -> None:
        ratio = long_tail_ratio(trainer, self.below_ratio)
        self.off = ratio is not None
        if self.off and trainer.is_global_zero:
            info(f"no weight average: the largest class has {ratio:.0f}x the photos of the smallest "
                 f"(--average-below-ratio {self.below_ratio:g}); the best epoch is kept")

    def state_dict(self) -> dict:
        return {"sum": self.sum, "epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        self.sum, self.epochs = dict(state.get("sum", {})), list(state.get("epochs", []))

    def on_train_epoch_end(self, trainer, module) -> None:
        epoch = trainer.current_epoch + 1
        # max_epochs: the plan, as FitScheduleToBudget set it for the time budget
        if self.off or epoch <= self.start * trainer.fit_loop.max_epochs or epoch in self.epochs:
            return
        with torch.no_grad():
            for name, value in _current_weights(trainer, module).items():
                if value.is_floating_point():
                    value = value.detach().to("cpu", torch.float32)
                    self.sum[name] = self.sum[name] + value if name in self.sum else value.clone()
        self.epochs.append(epoch)

    def average(self) -> dict[str, torch.Tensor] | None:
        """The mean weights (floating-point entries only), or None before any epoch was summed."""
        if self.off or not self.epochs:
            return None
        return {name: total / len(self.epochs) for name, total in self.sum.items()}


class MovingAverage(EMAWeightAveraging):
    """Lightning's moving average of the weights, whose decay may depend on the class counts: on a
    long tail (largest class ``long_tail_ratio`` times the smallest or more) a shorter memory
    (``long_tail_decay``), which follows the rare classes' few photos more closely."""

    def __init__(self, decay: float, long_tail_decay: float | None = None, long_tail_ratio: float | None = None):
        super().__init__(decay=decay)
        self.decay, self.long_tail_decay, self.ratio = decay, long_tail_decay, long_tail_ratio

    def setup(self, trainer, pl_module, stage: str) -> None:
        # The datamodule's setup runs before the callbacks', so its training counts are known here.
        ratio = long_tail_ratio(trainer, self.ratio) if stage == "fit" else None
        if ratio is not None and self.long_tail_decay is not None:
            self.decay = self.long_tail_decay
            if trainer.is_global_zero:
                info(f"moving average decay {self.decay:g}: the largest class has {ratio:.0f}x "
                     f"the photos of the smallest (--ema-long-tail)")
        self._kwargs["avg_fn"] = get_ema_avg_fn(decay=self.decay)
        super().setup(trainer, pl_module, stage)


def _current_weights(trainer, module) -> dict[str, torch.Tensor]:
    """The weights the model is at the end of an epoch: with --ema the moving average, which
    Lightning's callback holds apart from the module except while validating and at the end."""
    ema = next((c for c in trainer.callbacks if isinstance(c, EMAWeightAveraging)), None)
    held = getattr(ema, "_average_model", None)  # torch.optim.swa_utils.AveragedModel of the module
    return held.module.state_dict() if held is not None else module.state_dict()
