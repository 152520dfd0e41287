"""Learning-rate schedules as a plan that can be rebuilt: when the time budget shortens training,
the schedule is built again for the new length at the step training has reached, so it still
anneals to its floor at the new last step instead of being cut off near its peak."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


# the swa schedule: where it stops annealing (the weight average's start, --average-from's 0.5) and
# the share of the peak it holds from there
HOLD_FROM = 0.5
SWA_FLOOR = 0.2

ANNEALED = ("onecycle", "cosine", "swa")  # the schedules planned in steps, which the time budget rebuilds


class CosineWithWarmup:
    """Linear warm-up, then half a cosine to zero at ``total`` steps (a picklable lr_lambda, so its
    plan travels in checkpoints)."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))))


class CosineThenHold:
    """Stochastic weight averaging's schedule (Izmailov et al., 2018): linear warm-up, half a cosine
    down to ``floor`` x the peak at ``HOLD_FROM`` of the steps, then held there, so that the epochs
    the weight average sums (the second half) sample a wide basin instead of one annealed point."""

    def __init__(self, warmup: int, total: int, floor: float = SWA_FLOOR):
        self.warmup, self.total, self.floor = warmup, total, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        hold = max(self.warmup + 1, round(HOLD_FROM * self.total))
        t = min(1.0, (step - self.warmup) / (hold - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class SchedulePlan:
    kind: str  # onecycle | cosine | swa
    max_lrs: list[float]
    warmup_steps: int
    total_steps: int

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
        lam = CosineThenHold if self.kind == "swa" else CosineWithWarmup
        return LambdaLR(opt, lam(self.warmup_steps, self.total_steps), last_epoch=last)

    def ending_at(self, total_steps: int) -> "SchedulePlan | None":
        """This plan ending at ``total_steps`` (sooner or, back towards the first plan, later); None
        when the warm-up would not finish."""
        if self.kind == "onecycle" and total_steps - 1 <= self.warm_end - 1:
            return None
        plan = SchedulePlan(self.kind, self.max_lrs, self.warmup_steps, total_steps)
        plan.warm_end = self.warm_end
        return plan
