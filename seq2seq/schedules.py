"""Learning-rate schedules, as factors of the peak learning rate.

`inverse_sqrt_schedule` depends on the update count alone. `BudgetSchedule` depends on the share
of the training budget spent (updates, epochs or wall-clock time), which its owner measures: it
holds the peak rate and anneals it over the budget's last part, so a run stopped by `max_time`
ends at a low learning rate instead of in the middle of Adam's noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


def inverse_sqrt_schedule(warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up to 1 at `warmup_steps`, then sqrt(warmup / step)."""

    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup_steps, math.sqrt(warmup_steps / step))

    return factor


def warmup_stable_decay(
    step: int, progress: float, warmup_steps: int, decay_fraction: float, final_factor: float
) -> float:
    """Factor after `step` updates with `progress` (0..1) of the budget spent.

    Linear warm-up to 1 over `warmup_steps` updates, 1 until the last `decay_fraction` of the
    budget, then a straight line down to `final_factor` where the budget ends.
    """
    warmup = min(max(step, 1) / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
    left = 1.0 - min(max(progress, 0.0), 1.0)  # share of the budget still to spend
    decay = min(left / decay_fraction, 1.0)
    return warmup * (final_factor + (1.0 - final_factor) * decay)


class BudgetSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Warm-up, hold, then linear decay over the last `decay_fraction` of a training budget.

    `progress()` returns the share of the budget spent so far (0..1). It is asked once per
    `step()`, after every update; it is not part of the state dict, so the owner passes it
    again when a run resumes.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        progress: Callable[[], float],
        warmup_steps: int,
        decay_fraction: float,
        final_factor: float,
        last_epoch: int = -1,
    ) -> None:
        if not 0.0 < decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must lie in (0, 1], got {decay_fraction}")
        self.progress = progress
        self.warmup_steps = warmup_steps
        self.decay_fraction = decay_fraction
        self.final_factor = final_factor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        step, progress = self.last_epoch, self.progress()
        factor = warmup_stable_decay(
            step, progress, self.warmup_steps, self.decay_fraction, self.final_factor
        )
        return [base_lr * factor for base_lr in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "progress")}
