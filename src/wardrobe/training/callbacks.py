"""What a fine-tuning run does besides learning, each a Lightning Callback whose state travels in
checkpoints (so ``--resume`` continues it): the epoch log, each epoch's validation scores, the
overfitting warning, the time budget and the per-rank report."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer

from wardrobe.plotting import pyplot, save
from wardrobe.ui import info, warn

COLUMNS = ("epoch", "train_loss", "train_acc", "train_f1_macro", "val_loss", "val_acc", "val_f1_macro",
           "lr", "train_images_per_s", "epoch_seconds")


class EpochLog(L.Callback):
    """One row per epoch (loss, accuracy, macro-F1 for train and validation, learning rate, train
    images/s with validation time left out) in ``epochs.csv``, a line on the console, and
    ``curves.png`` when training ends."""

    def __init__(self, out: Path):
        self.path, self.curves = out / "epochs.csv", out / "curves.png"
        self.rows: list[dict] = []
        self._t0 = self._val_t0 = 0.0
        self._val_seconds = 0.0
        self._images = 0

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state.get("rows", []))

    def on_train_epoch_start(self, trainer, module) -> None:
        self._t0, self._val_seconds, self._images = time.perf_counter(), 0.0, 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[1])

    def on_validation_epoch_start(self, trainer, module) -> None:
        self._val_t0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer, module) -> None:
        self._val_seconds += time.perf_counter() - self._val_t0

    def on_train_epoch_end(self, trainer, module) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        seconds = time.perf_counter() - self._t0
        row = {"epoch": trainer.current_epoch + 1,
               **{k: round(m.get(k, float("nan")), 5) for k in COLUMNS[1:7]},
               "lr": trainer.optimizers[0].param_groups[0]["lr"],
               "train_images_per_s": round(self._images * trainer.world_size / max(seconds - self._val_seconds, 1e-9), 2),
               "epoch_seconds": round(seconds, 1)}
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        if not trainer.is_global_zero:
            return
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(self.rows)
        val = "" if np.isnan(row["val_acc"]) else f"val acc {row['val_acc']:.3f} macro-F1 {row['val_f1_macro']:.3f} | "
        info(f"epoch {row['epoch']}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
             f"{val}{row['train_images_per_s']:.1f} train images/s")

    def on_train_end(self, trainer, module) -> None:
        if trainer.is_global_zero and self.rows:
            plot_curves(self.rows, self.curves)


class ValidationScores(L.Callback):
    """Every epoch's validation probabilities, in validation order (one process only; the run's
    validation figures then grade the epoch choice cross-fitted, training/posthoc.py). Kept in
    float16: 14 epochs of 931 photos and 17 classes are under half a megabyte."""

    def __init__(self):
        self.epochs: list[torch.Tensor] = []
        self._batches: list[torch.Tensor] = []

    def state_dict(self) -> dict:
        return {"epochs": list(self.epochs)}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state.get("epochs", []))

    def on_validation_epoch_start(self, trainer, module) -> None:
        self._batches = []

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if outputs is not None and not trainer.sanity_checking:
            self._batches.append(torch.softmax(outputs.detach().float(), 1).to(torch.float16).cpu())

    def on_validation_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking or not self._batches or trainer.world_size > 1:
            return
        epoch = trainer.current_epoch  # a resumed run redoes no epoch, but keep the list one per epoch
        self.epochs = self.epochs[:epoch] + [torch.cat(self._batches)]
        self._batches = []

    def probabilities(self) -> list[np.ndarray]:
        return [e.float().numpy() for e in self.epochs]


class OverfitWarning(L.Callback):
    """Warns once when train accuracy exceeds validation accuracy by more than ``gap`` and the
    difference grew since the previous epoch. Never after the first epoch alone: with --ema the
    validated weights are a moving average that still lags the trained ones there."""

    def __init__(self, gap: float):
        self.gap = gap
        self.gaps: list[float] = []
        self.warned = False

    def state_dict(self) -> dict:
        return {"gaps": self.gaps, "warned": self.warned}

    def load_state_dict(self, state: dict) -> None:
        self.gaps, self.warned = list(state.get("gaps", [])), bool(state.get("warned", False))

    def on_train_epoch_end(self, trainer, module) -> None:
        m = trainer.callback_metrics
        if "val_acc" not in m or "train_acc" not in m:
            return
        train, val = float(m["train_acc"]), float(m["val_acc"])
        self.gaps.append(train - val)
        growing = len(self.gaps) > 1 and self.gaps[-1] > self.gaps[-2]
        if not self.warned and self.gaps[-1] > self.gap and growing and trainer.is_global_zero:
            self.warned = True
            warn(f"overfitting: train accuracy {train:.3f} exceeds validation {val:.3f} by {self.gaps[-1]:.3f} at "
                 f"epoch {trainer.current_epoch + 1} and the gap is growing; try stronger --augment, more "
                 "--weight-decay or fewer --epochs")


class FitScheduleToBudget(L.Callback):
    """With --max-minutes, a schedule planned over more epochs than fit would be cut while its
    learning rate is still high. After each epoch this projects how many epochs fit in the budget
    and, when fewer than planned, ends training and the learning-rate schedule at that epoch
    (``module.reschedule``), so the last epochs anneal as the recipe intends.

    The first epoch carries one-off costs (loader workers starting, caches filled, the frozen
    stages exported) and whatever else the machine was doing at the start, so once later epochs
    exist the pace is their median. While training is in the first half of its plan, a plan
    shortened on a slow start grows back (up to the epochs asked for) when the later pace allows:
    on a busy first minute a top-10 run was cut from 14 epochs to 10 for good (session 35). In the
    second half the plan only shrinks: the weight average has started summing epochs by then."""

    def __init__(self, budget_seconds: float, margin: float = 1.05):
        self.budget, self.margin = budget_seconds, margin
        self.epochs: int | None = None  # the plan when it differs from the epochs asked for
        self.planned: int | None = None  # the epochs asked for
        self.ends: list[float] = []  # the training clock at the end of each epoch
        # (all three kept in checkpoints for --resume)

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "planned": self.planned, "ends": self.ends}

    def load_state_dict(self, state: dict) -> None:
        self.epochs, self.planned = state.get("epochs"), state.get("planned")
        self.ends = list(state.get("ends", []))

    def _apply(self, trainer, module) -> None:
        trainer.fit_loop.max_epochs = self.epochs
        module.reschedule(self.epochs * trainer.num_training_batches)

    def on_train_start(self, trainer, module) -> None:
        self.planned = self.planned or trainer.max_epochs
        if self.epochs is not None:  # resumed: the changed plan still holds
            self._apply(trainer, module)

    def pace(self) -> float:
        """Seconds an epoch takes from here on: the median of the epochs after the first, once any."""
        durations = np.diff([0.0, *self.ends])
        return float(np.median(durations[1:] if len(durations) > 1 else durations))

    def on_train_epoch_end(self, trainer, module) -> None:
        # After validation, before the checkpoints (saved at the end of each training epoch, by a
        # callback Lightning runs after this one), so last.ckpt carries the changed plan.
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is None:
            return
        done = trainer.current_epoch + 1
        elapsed = timer.time_elapsed("train")
        self.ends = [*self.ends[:done - 1], elapsed]
        per_epoch = self.pace()
        fit = done + int(max(0.0, self.budget - elapsed) // (per_epoch * self.margin))
        fit = trainer.strategy.broadcast(min(fit, self.planned), 0)  # every rank follows rank 0's clock
        current = self.epochs or self.planned
        if fit == current or (fit > current and 2 * done > current):
            return
        grew = fit > current
        self.epochs = max(done, fit)
        if self.epochs == done:
            trainer.should_stop = True
        else:
            self._apply(trainer, module)
        info(f"time budget: an epoch {'now ' if grew else ''}takes {per_epoch / 60:.1f} min, so {self.epochs} of "
             f"{self.planned} epochs fit; training and its learning-rate schedule now end at epoch {self.epochs}")


class RankReport(L.Callback):
    """Each process writes how many batches and photos it trained, so multi-device runs can be checked."""

    def __init__(self, out: Path):
        self.dir = out / "ranks"
        self.images = 0

    def state_dict(self) -> dict:
        return {"images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.images = int(state.get("images", 0))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.images += len(batch[1])

    def on_train_end(self, trainer, module) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"rank-{trainer.global_rank}.json").write_text(json.dumps(
            {"rank": trainer.global_rank, "world_size": trainer.world_size,
             "batches": int(trainer.fit_loop.total_batch_idx + 1), "images": self.images}))


def plot_curves(rows: list[dict], path: Path) -> None:
    plt = pyplot()

    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    a.plot(ep, [r["val_loss"] for r in rows], "o-", label="validation")
    a.set(title="loss", xlabel="epoch")
    b.plot(ep, [r["train_acc"] for r in rows], "o-", label="train accuracy")
    b.plot(ep, [r["val_acc"] for r in rows], "o-", label="validation accuracy")
    b.plot(ep, [r["val_f1_macro"] for r in rows], "s--", label="validation macro-F1")
    b.set(title="accuracy", xlabel="epoch")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save(fig, path, dpi=100)
