"""What a fine-tuning run does besides learning, each a Lightning Callback whose state travels in
checkpoints (so ``--resume`` continues it): the epoch log, each epoch's validation scores, the
overfitting warning, the time budget, progressive resizing and the per-rank report."""

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
from wardrobe.training.augment import progressive_sides
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
    second half the plan only shrinks: the weight average has started summing epochs by then.

    With progressive resizing (``cost``: an epoch's training cost against a full-size one, given the
    epoch and the plan's length) the training part of each epoch is scaled by its cost and the
    validation part, which runs at full size every epoch, is not."""

    def __init__(self, budget_seconds: float, margin: float = 1.05, cost=None):
        self.budget, self.margin = budget_seconds, margin
        self.cost = cost  # cost(trainer, epoch, epochs) -> float; None: every epoch costs the same
        self.epochs: int | None = None  # the plan when it differs from the epochs asked for
        self.planned: int | None = None  # the epochs asked for
        self.ends: list[float] = []  # the training clock at the end of each epoch
        self.vals: list[float] = []  # the seconds each epoch spent validating
        self.costs: list[float] = []  # each epoch's cost
        # (all kept in checkpoints for --resume)
        self._val_t0, self._val = 0.0, 0.0

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "planned": self.planned, "ends": self.ends, "vals": self.vals,
                "costs": self.costs}

    def load_state_dict(self, state: dict) -> None:
        self.epochs, self.planned = state.get("epochs"), state.get("planned")
        self.ends = list(state.get("ends", []))
        self.vals, self.costs = list(state.get("vals", [])), list(state.get("costs", []))

    def _apply(self, trainer, module) -> None:
        trainer.fit_loop.max_epochs = self.epochs
        module.reschedule(self.epochs * trainer.num_training_batches)

    def on_train_start(self, trainer, module) -> None:
        self.planned = self.planned or trainer.max_epochs
        if self.epochs is not None:  # resumed: the changed plan still holds
            self._apply(trainer, module)

    def on_train_epoch_start(self, trainer, module) -> None:
        self._val = 0.0

    def on_validation_epoch_start(self, trainer, module) -> None:
        self._val_t0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer, module) -> None:
        self._val += time.perf_counter() - self._val_t0

    def pace(self) -> tuple[float, float]:
        """Seconds a full-size epoch spends training and validating from here on: the medians of the
        epochs after the first, once any, the training part divided by each epoch's cost."""
        n = len(self.ends)
        durations = np.diff([0.0, *self.ends])
        vals = np.asarray(self.vals) if len(self.vals) == n else np.zeros(n)
        costs = np.asarray(self.costs) if len(self.costs) == n else np.ones(n)
        train = np.maximum(durations - vals, 0.0) / costs
        later = slice(1 if n > 1 else 0, None)
        return float(np.median(train[later])), float(np.median(vals[later]))

    def _fit(self, trainer, done: int, left: float, train: float, val: float) -> int:
        """The most epochs (up to the epochs asked for) whose remaining ones fit in ``left`` seconds, a
        full-size epoch taking ``train`` + ``val`` seconds."""
        cost = self.cost or (lambda trainer, epoch, epochs: 1.0)
        n = done
        while n < self.planned and self.margin * sum(
                train * cost(trainer, e, n + 1) + val for e in range(done, n + 1)) <= left:
            n += 1
        return n

    def on_train_epoch_end(self, trainer, module) -> None:
        # After validation, before the checkpoints (saved at the end of each training epoch, by a
        # callback Lightning runs after this one), so last.ckpt carries the changed plan.
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is None:
            return
        done = trainer.current_epoch + 1
        current = self.epochs or self.planned
        self.ends = [*self.ends[:done - 1], timer.time_elapsed("train")]
        self.vals = [*self.vals[:done - 1], self._val]
        self.costs = [*self.costs[:done - 1], self.cost(trainer, done - 1, current) if self.cost else 1.0]
        train, val = self.pace()
        fit = self._fit(trainer, done, self.budget - self.ends[-1], train, val)
        fit = trainer.strategy.broadcast(fit, 0)  # every rank follows rank 0's clock
        if fit == current or (fit > current and 2 * done > current):
            return
        grew = fit > current
        self.epochs = max(done, fit)
        if self.epochs == done:
            trainer.should_stop = True
        else:
            self._apply(trainer, module)
        info(f"time budget: an epoch {'now ' if grew else ''}takes {(train + val) / 60:.1f} min"
             f"{' at full size' if self.cost else ''}, so {self.epochs} of {self.planned} epochs fit; "
             f"training and its learning-rate schedule now end at epoch {self.epochs}")


class ProgressiveResize(L.Callback):
    """--progressive: each epoch's training crops, from ``start`` pixels up to the full training size
    by the epoch the weight average starts (half-way without one), so that the early epochs, which
    only set the weights on their way, cost less and the averaged ones see the full size. The side
    follows the current plan, which the time budget may shorten."""

    def __init__(self, start: int, average_from: float | None):
        self.start = start
        self.ramp = average_from if average_from is not None and average_from < 1 else 0.5
        self.side: int | None = None

    def sides(self, trainer, epochs: int) -> list[int]:
        full = trainer.datamodule.train_side
        return progressive_sides(self.start, full, epochs, int(self.ramp * epochs))

    def cost(self, trainer, epoch: int, epochs: int) -> float:
        """An epoch's training cost against a full-size one: its crops' area over the full crops'."""
        return (self.sides(trainer, epochs)[epoch] / trainer.datamodule.train_side) ** 2

    def on_train_epoch_start(self, trainer, module) -> None:
        side = self.sides(trainer, trainer.fit_loop.max_epochs)[trainer.current_epoch]
        if side != self.side:
            trainer.datamodule.set_train_side(side)
            self.side = side
            if trainer.is_global_zero:
                info(f"progressive resizing: epoch {trainer.current_epoch + 1} trains on {side} px crops")


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
