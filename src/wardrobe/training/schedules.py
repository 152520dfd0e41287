"""Learning-rate schedules as a plan that can be rebuilt: when the time budget shortens training,
the schedule is built again for the new length at the step training has reached, so it still
anneals to its floor at the new last step instead of being cut off near its peak."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


# the swa schedule: where it stops annealing when no weight average says (--average-from's usual 0.5)
# and the share of the peak it holds from there
HOLD_FROM = 0.5
SWA_FLOOR = 0.2

ANNEALED = ("onecycle", "cosine", "swa")  # the schedules planned in steps, which the time budget rebuilds


class CosineWithWarmup:
    """Linear warm-up, then half a cosine from the peak down to ``floor`` x the peak at ``hold_from``
    of the ``total`` steps, held there after (a picklable lr_lambda, so its plan travels in
    checkpoints). The cosine schedule anneals to zero at the end (floor 0, hold_from 1); the swa one
    is stochastic weight averaging's (Izmailov et al., 2018): held at SWA_FLOOR from HOLD_FROM on, so
    that the epochs the weight average sums (the second half) sample a wide basin instead of one
    annealed point."""

    def __init__(self, warmup: int, total: int, floor: float = 0.0, hold_from: float = 1.0):
        self.warmup, self.total, self.floor, self.hold_from = warmup, total, floor, hold_from

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        end = max(self.warmup + 1, round(self.hold_from * self.total))
        t = min(1.0, (step - self.warmup) / (end - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class SchedulePlan:
    kind: str  # onecycle | cosine | swa
    max_lrs: list[float]
    warmup_steps: int
    total_steps: int
    hold_from: float = HOLD_FROM  # swa: where it starts holding, as a share of the steps (--average-from)

    def __post_init__(self):
        # one-cycle: the step its warm-up ends on stays put when the plan's end moves
        pct = max(0.01, min(0.5, self.warmup_steps / self.total_steps))
        self.warm_end = pct * self.total_steps

    def build(self, opt: torch.optim.Optimizer, next_step: int = 0) -> LRScheduler:
        """The scheduler for this plan, positioned so that the next optimizer step is ``next_step``."""
        last = next_step - 1
        if self.kind == "onecycle":
            return OneCycleLR(opt, max_lr=self.max_lrs, total_steps=self.total_steps,
                              pct_start=self.warm_end / self.total_steps, last_epoch=last)
        swa = {"floor": SWA_FLOOR, "hold_from": self.hold_from} if self.kind == "swa" else {}
        return LambdaLR(opt, CosineWithWarmup(self.warmup_steps, self.total_steps, **swa), last_epoch=last)

    def ending_at(self, total_steps: int) -> "SchedulePlan | None":
        """This plan ending at ``total_steps`` (sooner or, back towards the first plan, later); None
        when the warm-up would not finish."""
        if self.kind == "onecycle" and total_steps - 1 <= self.warm_end - 1:
            return None
        plan = SchedulePlan(self.kind, self.max_lrs, self.warmup_steps, total_steps, self.hold_from)
        plan.warm_end = self.warm_end
        return plan
