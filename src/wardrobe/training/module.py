"""The LightningModule: a classifier network, its loss, metrics, stage freezing and optimiser."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from wardrobe.models.heads import head_linear
from wardrobe.models.stages import depthwise_convs, stage_modules, trainable_stages
from wardrobe.training.config import FitConfig
from wardrobe.training.frozen import env_fast_path, forward_rest, make_prefix
from wardrobe.training.losses import make_loss
from wardrobe.training.mixing import BatchMixer, mixed_loss
from wardrobe.training.schedules import ANNEALED, HOLD_FROM, SchedulePlan
from wardrobe.training.selfdistill import SelfDistiller


class ClassifierModule(L.LightningModule):
    def __init__(self, model: nn.Module, num_classes: int, cfg: FitConfig, loss: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.num_classes = num_classes
        self.loss_fn = loss  # None: made in setup() from the datamodule's training labels
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.train_f1 = MulticlassF1Score(num_classes, average="macro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        self.head_params = list(head_linear(model).parameters())
        head_ids = {id(p) for p in self.head_params}
        self.backbone_params = [p for p in model.parameters() if id(p) not in head_ids]
        self.final_trainable = trainable_stages(model, cfg.trainable)
        self.schedule_plan: SchedulePlan | None = None
        self.prefix = None  # the frozen leading stages in ONNX Runtime (on_fit_start)
        self.mixer = BatchMixer(cfg.augment.mix)
        # L2-SP: the backbone's weights as they start (pretrained), taken here so that --resume
        # keeps pulling towards them rather than towards the checkpoint's
        self.anchors = {id(p): p.detach().clone() for p in self.backbone_params} if cfg.l2sp else {}
        self.distiller: SelfDistiller | None = None  # --self-distill: made in setup() from the training labels

    def setup(self, stage: str) -> None:
        if self.loss_fn is None:
            cfg = self.cfg
            self.loss_fn = make_loss(cfg.loss, self.trainer.datamodule.train_labels, self.num_classes,
                                     cfg.label_smoothing, cfg.focal_gamma)
        if self.cfg.self_distill and self.distiller is None:
            self.distiller = SelfDistiller(torch.as_tensor(self.trainer.datamodule.train_labels), self.num_classes,
                                           self.cfg.self_distill, self.cfg.label_smoothing)

    # -- freezing -------------------------------------------------------------------------------
    def frozen_stages(self, epoch: int) -> list[nn.Module]:
        """Head-only during the first ``head_epochs`` epochs, then the configured stages; the
        stages left out are frozen (no gradients, batch-norm statistics kept)."""
        active = [] if epoch < self.cfg.head_epochs else self.final_trainable
        active_ids = {id(p) for m in active for p in m.parameters()}
        frozen = []
        for stage in stage_modules(self.model):
            on = any(id(p) in active_ids for p in stage.parameters())
            for p in stage.parameters():
                p.requires_grad_(on)
            if not on:
                frozen.append(stage)
        if self.cfg.freeze_depthwise:
            for m in depthwise_convs(self.model):
                m.weight.requires_grad_(False)
        return frozen

    def on_train_epoch_start(self) -> None:
        for m in self.frozen_stages(self.current_epoch):
            m.eval()
        if self.cfg.freeze_bn:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    # -- steps ----------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # Channels-last: 1.45x faster training steps for Lite0 on this machine's CPU (bench/finetune_speed.py).
        self.model.to(memory_format=torch.channels_last)
        # L2-SP's anchors on the weights' device and layout, once, rather than a copy every step
        self.anchors = {id(p): torch.empty_like(p).copy_(self.anchors[id(p)]) for p in self.backbone_params
                        if id(p) in self.anchors}
        if self.device.type == "cpu":
            self.prefix = make_prefix(self.model, self.final_trainable, env_fast_path())

    def on_fit_end(self) -> None:
        self.prefix = None  # its temporary ONNX files go with it

    def forward(self, x):
        if self.prefix is not None:
            return forward_rest(self.model, self.prefix(x), self.prefix.k)
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def training_step(self, batch, _):
        if self.distiller is not None:  # (x, y, photo index); no mixing (FitConfig.validate)
            x, y, idx = batch
            logits = self(x)
            loss = self.distiller.loss(logits, y, idx, self.training_progress())
        else:
            x, y, y_other, lam = self.mixer(*batch)
            logits = self(x)
            loss = mixed_loss(self.loss_fn, logits, y, y_other, lam)
        self.train_acc(logits.detach(), y)
        self.train_f1(logits.detach(), y)
        n = len(y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=n)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=n)
        self.log("train_f1_macro", self.train_f1, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def training_progress(self) -> float:
        """How far training is, 0 to 1: through the learning-rate schedule's steps (which follow the
        time budget's cut), else through the epochs."""
        if self.schedule_plan is not None:
            return self.global_step / max(1, self.schedule_plan.total_steps - 1)
        return self.current_epoch / max(1, self.trainer.max_epochs - 1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.distiller is not None:  # --resume carries on with the remembered predictions
            checkpoint["self_distill"] = self.distiller.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Lightning restores after setup(), so the distiller exists by now
        if self.distiller is not None and isinstance(checkpoint.get("self_distill"), dict):
            self.distiller.load_state_dict(checkpoint["self_distill"])

    def validation_step(self, batch, _):
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.val_f1(logits, y)
        n = len(y)
        self.log("val_loss", nn.functional.cross_entropy(logits, y), on_epoch=True, sync_dist=True, batch_size=n)
        self.log("val_acc", self.val_acc, on_epoch=True, batch_size=n)
        self.log("val_f1_macro", self.val_f1, on_epoch=True, prog_bar=True, batch_size=n)
        return logits  # for ValidationScores

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.cfg
        lr_bb = cfg.lr * cfg.backbone_lr_mult
        groups = [{"params": self.head_params, "lr": cfg.lr}, *self.backbone_groups(lr_bb)]
        if cfg.l2sp:  # the backbone decays towards its anchors (on_before_optimizer_step), not zero
            for g in groups[1:]:
                g["weight_decay"] = 0.0
        if cfg.optimizer == "adamw":
            # one fused kernel for the whole update: 3x faster than the foreach default on a CPU (session 33)
            fused = self.device.type in ("cpu", "cuda")
            opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
        else:
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                  nesterov=True)
        if cfg.scheduler in ANNEALED:
            total = max(1, int(self.trainer.estimated_stepping_batches))
            warmup = int(cfg.warmup_epochs * total / max(1, self.trainer.max_epochs))
            # swa holds its rate from where the weight average starts
            hold = cfg.average_from if cfg.average_from and cfg.average_from < 1 else HOLD_FROM
            self.schedule_plan = SchedulePlan(cfg.scheduler, [g["lr"] for g in groups], warmup, total, hold)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": self.schedule_plan.build(opt), "interval": "step"}}
        if cfg.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_f1_macro",
                                                       "interval": "epoch"}}
        return opt

    def on_before_optimizer_step(self, optimizer) -> None:
        if not self.anchors:
            return
        # decoupled like AdamW's own decay (before the update, scaled by the group's current rate),
        # only for the weights with a gradient this step: frozen stages stay where they are
        for group in optimizer.param_groups[1:]:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                anchors = [self.anchors[id(p)] for p in params]
                with torch.no_grad():
                    torch._foreach_add_(params, torch._foreach_sub(params, anchors), alpha=-group["lr"] * self.cfg.l2sp)

    def backbone_groups(self, lr: float) -> list[dict]:
        """The backbone's parameter groups: one at ``lr``, or with --layer-decay one per stage, the top
        stage at ``lr`` and each one below at ``layer_decay`` times the LR of the one above."""
        decay = self.cfg.layer_decay
        if decay == 1:
            return [{"params": self.backbone_params, "lr": lr}]
        head_ids = {id(p) for p in self.head_params}
        groups, seen = [], set(head_ids)
        for depth, stage in enumerate(reversed(stage_modules(self.model))):
            params = [p for p in stage.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            if params:
                groups.append({"params": params, "lr": lr * decay ** depth})
        rest = [p for p in self.backbone_params if id(p) not in seen]  # e.g. the level heads: top rate
        return ([{"params": rest, "lr": lr}] if rest else []) + groups

    def reschedule(self, total_steps: int) -> bool:
        """End the learning-rate schedule at ``total_steps`` instead of where it was planned: the
        scheduler is built again for the new plan, at the step training has reached. False when
        there is no such schedule or its warm-up would not finish."""
        plan = self.schedule_plan.ending_at(total_steps) if self.schedule_plan else None
        if plan is None:
            return False
        config = self.trainer.lr_scheduler_configs[0]
        config.scheduler = plan.build(self.trainer.optimizers[0], next_step=self.trainer.global_step)
        self.schedule_plan = plan
        return True
