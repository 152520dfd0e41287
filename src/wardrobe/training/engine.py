"""Fine-tuning and training from scratch on Lightning: the module, its callbacks, the data loaders."""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from wardrobe.models.heads import head_linear
from wardrobe.training.config import FitConfig
from wardrobe.ui import info, warn


def stage_modules(model: nn.Module) -> list[nn.Module]:
    """The backbone's stages, input side first, classifier excluded. timm models with ``blocks``
    give stem, each block stage, then the head convolution; others their top-level children."""
    classifier = head_linear(model)
    if hasattr(model, "blocks") and isinstance(model.blocks, nn.Sequential):
        stem = [m for n, m in model.named_children() if n in ("conv_stem", "bn1")]
        head = [m for n, m in model.named_children() if n in ("conv_head", "bn2", "global_pool")]
        return [nn.ModuleList(stem), *model.blocks, nn.ModuleList(head)]
    out = []
    for _, child in model.named_children():
        if child is classifier or any(p is classifier.weight for p in child.parameters()):
            continue
        out.append(child)
    return out


def trainable_stages(model: nn.Module, trainable: str) -> list[nn.Module]:
    stages = stage_modules(model)
    if trainable == "all":
        return stages
    if trainable == "head":
        return []
    n = int(trainable.split(":")[1])
    return stages[len(stages) - n:] if n else []


class ClassifierModule(L.LightningModule):
    def __init__(self, model: nn.Module, num_classes: int, cfg: FitConfig, loss: nn.Module, steps_per_epoch: int):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.loss_fn = loss
        self.steps_per_epoch = steps_per_epoch
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.train_f1 = MulticlassF1Score(num_classes, average="macro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        self.head_params = list(head_linear(model).parameters())
        head_ids = {id(p) for p in self.head_params}
        self.backbone_params = [p for p in model.parameters() if id(p) not in head_ids]
        self.final_trainable = trainable_stages(model, cfg.trainable)
        self.images_seen = 0
        self._frozen: list[nn.Module] = []
        self._loss_sum = 0.0
        self._loss_n = 0
        self.epoch_log: "EpochLog | None" = None

    # -- freezing -------------------------------------------------------------------------------
    def set_stage(self, epoch: int) -> None:
        """Head-only during the first ``head_epochs`` epochs, then the configured stages."""
        active = [] if epoch < self.cfg.head_epochs else self.final_trainable
        active_ids = {id(p) for m in active for p in m.parameters()}
        self._frozen = []
        for stage in stage_modules(self.model):
            on = any(id(p) in active_ids for p in stage.parameters())
            for p in stage.parameters():
                p.requires_grad_(on)
            if not on:
                self._frozen.append(stage)

    def on_train_epoch_start(self) -> None:
        self.set_stage(self.current_epoch)
        for m in self._frozen:
            m.eval()  # frozen stages keep their batch-norm statistics
        self._loss_sum, self._loss_n = 0.0, 0
        self._epoch_t0 = time.perf_counter()
        self._epoch_seen0 = self.images_seen

    # -- steps ----------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # Channels-last: 1.45x faster training steps for Lite0 on this machine's CPU (bench/finetune_speed.py).
        self.model.to(memory_format=torch.channels_last)

    def forward(self, x):
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def training_step(self, batch, _):
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        self.train_acc.update(logits.detach(), y)
        self.train_f1.update(logits.detach(), y)
        self.images_seen += len(y)
        self._loss_sum += float(loss.detach()) * len(y)
        self._loss_n += len(y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # Lightning runs validation before this hook, so the epoch's row can be written here.
        train = {"train_loss": self._loss_sum / max(self._loss_n, 1),
                 "train_acc": float(self.train_acc.compute()), "train_f1_macro": float(self.train_f1.compute())}
        self.log("train_acc", train["train_acc"], sync_dist=True)
        self.log("train_f1_macro", train["train_f1_macro"], sync_dist=True)
        self.train_acc.reset()
        self.train_f1.reset()
        if self.epoch_log is not None:
            seconds = time.perf_counter() - self._epoch_t0
            images = (self.images_seen - self._epoch_seen0) * self.trainer.world_size
            self.epoch_log.record(self.trainer, train, images, seconds)

    def validation_step(self, batch, _):
        x, y = batch
        logits = self(x)
        self.val_acc.update(logits, y)
        self.val_f1.update(logits, y)
        self.log("val_loss", nn.functional.cross_entropy(logits, y), on_epoch=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val_acc", self.val_acc.compute(), sync_dist=True)
        self.log("val_f1_macro", self.val_f1.compute(), prog_bar=True, sync_dist=True)
        self.val_acc.reset()
        self.val_f1.reset()

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.cfg
        lr_bb = cfg.lr * cfg.backbone_lr_mult
        groups = [{"params": self.head_params, "lr": cfg.lr},
                  {"params": self.backbone_params, "lr": lr_bb}]
        if cfg.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                  nesterov=True)
        total = max(1, cfg.epochs * self.steps_per_epoch)
        warmup = int(cfg.warmup_epochs * self.steps_per_epoch)
        if cfg.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[cfg.lr, lr_bb], total_steps=total,
                                                        pct_start=max(0.01, min(0.5, warmup / total)))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if cfg.scheduler == "cosine":
            plan = {"total": total}  # FitScheduleToBudget may shorten it

            def factor(step):
                if step < warmup:
                    return (step + 1) / warmup
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, plan["total"] - warmup))))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            sched.wardrobe_plan = plan
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if cfg.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_f1_macro",
                                                       "interval": "epoch"}}
        return opt


def shorten_schedule(sched, total_steps: int) -> bool:
    """Make a one-cycle or cosine schedule end (reach its lowest learning rate) at ``total_steps``
    instead of where it was planned to. False when the scheduler cannot be re-planned."""
    if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR):
        phases = getattr(sched, "_schedule_phases", None)
        if not phases or total_steps - 1 <= phases[0]["end_step"]:
            return False  # the warm-up would not finish: leave the schedule alone
        sched.total_steps = total_steps
        phases[-1]["end_step"] = float(total_steps - 1)
    elif (plan := getattr(sched, "wardrobe_plan", None)) is not None:
        plan["total"] = total_steps
    else:
        return False
    # the next step's rate was set under the old plan: set it again under the new one

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_lr() outside step() warns; here it is the point
        rates = sched.get_lr()
    for group, lr in zip(sched.optimizer.param_groups, rates):
        group["lr"] = lr
    sched._last_lr = list(rates)
    return True


class FitScheduleToBudget(L.Callback):
    """With --max-minutes, a schedule planned over more epochs than fit would be cut while its
    learning rate is still high (measured: the best preset on clothing-17's 3,724 training photos
    managed 4 of 6 epochs in 27 minutes). After each epoch this projects how many epochs fit in
    the budget at the pace so far and, when fewer than planned, ends training and the learning-rate
    schedule at that epoch, so the last epochs anneal as the recipe intends."""

    def __init__(self, budget_seconds: float, steps_per_epoch: int, margin: float = 1.05):
        self.budget, self.steps_per_epoch, self.margin = budget_seconds, steps_per_epoch, margin
        self.epochs: int | None = None  # the shortened plan, kept in checkpoints for --resume
        self._planned_epoch = -1  # the epoch last judged, so an epoch with validation is not judged twice

    def state_dict(self) -> dict:
        return {"epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = state.get("epochs")

    def _apply(self, trainer) -> None:
        trainer.fit_loop.max_epochs = self.epochs
        for config in trainer.lr_scheduler_configs:
            shorten_schedule(config.scheduler, self.epochs * self.steps_per_epoch)

    def on_train_start(self, trainer, module) -> None:
        if self.epochs is not None:  # resumed: the shortened plan still holds
            self._apply(trainer)

    def on_validation_end(self, trainer, module) -> None:
        # At the epoch's end, validation included, and before the checkpoint callbacks (Lightning
        # runs those last), so last.ckpt carries the shortened plan.
        if not trainer.sanity_checking:
            self._plan(trainer)

    def on_train_epoch_end(self, trainer, module) -> None:
        # Without a validation split (--val-ratio 0) no validation ends the epoch; checkpoints are
        # then saved in this hook, and Lightning runs checkpoint callbacks after the others.
        if self._planned_epoch != trainer.current_epoch:
            self._plan(trainer)

    def _plan(self, trainer) -> None:
        from lightning.pytorch.callbacks import Timer  # heavy: Lightning, only when training or predicting on devices

        self._planned_epoch = trainer.current_epoch
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is None:
            return
        done = trainer.current_epoch + 1
        elapsed = timer.time_elapsed("train")
        per_epoch = elapsed / done
        fit = done + int(max(0.0, self.budget - elapsed) // (per_epoch * self.margin))
        planned = self.epochs or trainer.max_epochs
        fit = trainer.strategy.broadcast(fit, 0)  # every rank follows rank 0's clock
        if fit >= planned:
            return
        self.epochs = max(done, fit)
        if self.epochs == done:
            trainer.should_stop = True
        else:
            self._apply(trainer)

        info(f"time budget: an epoch takes {per_epoch / 60:.1f} min, so {self.epochs} of {planned} epochs fit; "
             f"training and its learning-rate schedule now end at epoch {self.epochs}")


class EpochLog:
    """One CSV row per epoch (loss, accuracy, macro-F1 for train and validation, LR, images/s),
    curves PNG at the end, and a warning when the train/validation gap keeps growing."""

    COLUMNS = ("epoch", "train_loss", "train_acc", "train_f1_macro", "val_loss", "val_acc", "val_f1_macro",
               "lr", "train_images_per_s", "epoch_seconds")

    def __init__(self, out: Path, overfit_gap: float, resume: bool = False):
        self.path = out / "epochs.csv"
        self.out = out
        self.overfit_gap = overfit_gap
        self.rows: list[dict] = []
        self.warned = False
        if resume and self.path.is_file():
            # Keep the epochs of the interrupted run; the resumed ones follow them.
            with self.path.open(newline="") as f:
                self.rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]

    def record(self, trainer, train: dict, images: int, seconds: float) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.rows = [r for r in self.rows if r["epoch"] < trainer.current_epoch + 1]
        row = {"epoch": trainer.current_epoch + 1, **{k: round(v, 5) for k, v in train.items()},
               **{k: round(m.get(k, float("nan")), 5) for k in ("val_loss", "val_acc", "val_f1_macro")},
               "lr": trainer.optimizers[0].param_groups[0]["lr"],
               "train_images_per_s": round(images / max(seconds - self._val_seconds(trainer), 1e-9), 2),
               "epoch_seconds": round(seconds, 1)}
        self.rows.append(row)
        if trainer.is_global_zero:
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.COLUMNS)
                w.writeheader()
                w.writerows(self.rows)

            val = "" if np.isnan(row["val_acc"]) else \
                f"val acc {row['val_acc']:.3f} macro-F1 {row['val_f1_macro']:.3f} | "
            info(f"epoch {row['epoch']}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
                 f"{val}{row['train_images_per_s']:.1f} train images/s")
        gaps = [r["train_acc"] - r["val_acc"] for r in self.rows]
        if (not self.warned and gaps[-1] > self.overfit_gap and (len(gaps) == 1 or gaps[-1] > gaps[-2])
                and trainer.is_global_zero):
            self.warned = True
            warn(f"overfitting: train accuracy {row['train_acc']:.3f} exceeds validation {row['val_acc']:.3f} "
                 f"by {gaps[-1]:.3f} at epoch {row['epoch']} and the gap is growing; "
                 "try stronger --augment, more --weight-decay or fewer --epochs")

    def overfitting(self) -> bool:
        return self.warned

    @staticmethod
    def _val_seconds(trainer) -> float:
        timer = getattr(trainer, "_wardrobe_val_seconds", 0.0)
        trainer._wardrobe_val_seconds = 0.0
        return timer


class ValTimer(L.Callback):
    """Times validation so that train images/s counts training time only."""

    def on_validation_epoch_start(self, trainer, module):
        self._t0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer, module):
        trainer._wardrobe_val_seconds = getattr(trainer, "_wardrobe_val_seconds", 0.0) + time.perf_counter() - self._t0


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib  # heavy: matplotlib, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib, only when plotting

    if not rows:
        return
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
    fig.savefig(path, dpi=100)
    plt.close(fig)


class RankReport(L.Callback):
    """Each process writes how many batches it trained, so multi-device runs can be checked."""

    def __init__(self, out: Path):
        self.dir = out / "ranks"

    def on_train_end(self, trainer, module):
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"rank-{trainer.global_rank}.json").write_text(json.dumps(
            {"rank": trainer.global_rank, "world_size": trainer.world_size,
             "batches": int(trainer.fit_loop.total_batch_idx + 1), "images": module.images_seen}))


def make_sampler(labels: np.ndarray, num_classes: int, cfg: FitConfig):
    """Class-balanced sampling (each class equally likely), or --balance N: N draws per class per epoch."""
    if cfg.sampler == "none" and not cfg.balance:
        return None
    counts = np.bincount(labels, minlength=num_classes)
    weights = 1.0 / counts[labels]
    n = cfg.balance * int((counts > 0).sum()) if cfg.balance else len(labels)
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=n, replacement=True,
                                 generator=torch.Generator().manual_seed(cfg.seed))


def loader(dataset, batch_size: int, workers: int, shuffle: bool = False, sampler=None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=workers, persistent_workers=workers > 0, drop_last=False,
                      pin_memory=torch.cuda.is_available())
