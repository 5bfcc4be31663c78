"""Optimizers and learning-rate schedules, as `TranslationModule.configure_optimizers` builds them.

A schedule is chosen by class (`--model.scheduler Plateau --model.scheduler.patience 2`, or
`class_path` in a config) and holds only the settings it reads, so a setting the chosen schedule
ignores cannot be set. A new schedule is one `Schedule` subclass here.

`InverseSqrt` depends on the update count alone. `Budget` depends on the share of the training
budget spent (updates, epochs or wall-clock time): it holds the peak rate and anneals it over the
budget's last part, so a run stopped by `max_time` ends at a low learning rate instead of in the
middle of Adam's noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from seq2seq.errors import Seq2SeqError, require


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter],
    name: str,
    learning_rate: float,
    weight_decay: float,
    fused: bool = True,
) -> torch.optim.Optimizer:
    """Adam or AdamW, fused into one kernel per step where torch has it (2.4+ on CPU) and
    `fused` (not under an fp16 loss scaler, whose gradients must be unscaled before clipping).
    The update is the same as the default implementation's (tested), in a fraction of the time."""
    optimizer_class = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    options = {"fused": True} if fused and torch.__version__ >= "2.4" else {}
    return optimizer_class(parameters, lr=learning_rate, weight_decay=weight_decay, **options)


def check_optimizer_settings(learning_rate: float, weight_decay: float) -> None:
    """One-line errors for a learning rate that is not positive or a negative weight decay."""
    require(
        math.isfinite(learning_rate) and learning_rate > 0,
        f"learning_rate must be a positive number, not {learning_rate}",
    )
    require(
        math.isfinite(weight_decay) and weight_decay >= 0,
        f"weight_decay must be a number of at least 0, not {weight_decay}",
    )


def clip_without_scaler(
    trainer: L.Trainer,
    optimizer: torch.optim.Optimizer,
    clip_value: float | None,
    algorithm: str | None,
) -> bool:
    """Clip the gradients under mixed precision without a loss scaler (bf16); whether it did.

    bf16's gradients are true ones, but Lightning's mixed-precision plugin refuses to clip for
    any fused optimizer, a guard meant for fp16, whose fused step unscales internally.
    """
    plugin = trainer.precision_plugin
    if not (isinstance(plugin, MixedPrecision) and plugin.scaler is None and clip_value):
        return False
    Precision.clip_gradients(plugin, optimizer, clip_value, algorithm or "norm")
    return True


class Schedule:
    """A learning-rate schedule: Lightning's `lr_scheduler` entry for an optimizer, or None."""

    def build(
        self, optimizer: torch.optim.Optimizer, trainer: L.Trainer
    ) -> dict[str, Any] | None:
        """The scheduler configuration for `optimizer` trained by `trainer`."""
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """The peak learning rate throughout."""

    def build(self, optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> None:
        """No scheduler."""
        return None


@dataclass(frozen=True)
class Plateau(Schedule):
    """Scale the learning rate by `factor` when validation BLEU stalls.

    Args:
        factor: learning-rate factor when validation BLEU stops improving.
        patience: validations without improvement before the factor applies.
        min_learning_rate: the floor.
    """

    factor: float = 0.5
    patience: int = 1
    min_learning_rate: float = 1e-5

    def __post_init__(self) -> None:
        require(0 < self.factor < 1, f"Plateau factor must lie in (0, 1), not {self.factor}")
        require(self.patience >= 0, f"Plateau patience must be at least 0, not {self.patience}")
        require(
            self.min_learning_rate >= 0,
            f"min_learning_rate must be at least 0, not {self.min_learning_rate}",
        )

    def build(self, optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> dict[str, Any]:
        """Reduce-on-plateau, stepped after every validation."""
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=self.factor,
            patience=self.patience,
            min_lr=self.min_learning_rate,
        )
        return {"scheduler": plateau, "monitor": "val/bleu", "interval": "epoch"}


@dataclass(frozen=True)
class InverseSqrt(Schedule):
    """Linear warm-up for `warmup_steps` updates, then 1/sqrt(step) (Vaswani et al., 2017).

    Args:
        warmup_steps: warm-up updates, at least 1.
    """

    warmup_steps: int = 1000

    def __post_init__(self) -> None:
        if self.warmup_steps < 1:
            raise Seq2SeqError(f"warmup_steps {self.warmup_steps} is too small for InverseSqrt")

    def build(self, optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> dict[str, Any]:
        """A LambdaLR stepped after every update."""
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, inverse_sqrt_schedule(self.warmup_steps)
        )
        return {"scheduler": schedule, "interval": "step"}


@dataclass(frozen=True)
class Budget(Schedule):
    """Warm up, hold the peak, then decay in a straight line to `min_learning_rate` over the
    last `decay_fraction` of the budget the Trainer sets: `max_steps`, `max_epochs` or
    `max_time`, whichever ends first.

    Args:
        warmup_steps: warm-up updates (0: none).
        decay_fraction: share of the budget over which the rate decays, in (0, 1].
        min_learning_rate: the rate where the budget ends.
    """

    warmup_steps: int = 0
    decay_fraction: float = 0.3
    min_learning_rate: float = 1e-5

    def __post_init__(self) -> None:
        if not 0.0 < self.decay_fraction <= 1.0:
            raise Seq2SeqError(f"decay_fraction must lie in (0, 1], got {self.decay_fraction}")
        if self.warmup_steps < 0:
            raise Seq2SeqError(f"warmup_steps {self.warmup_steps} is too small for Budget")
        require(
            self.min_learning_rate >= 0,
            f"min_learning_rate must be at least 0, not {self.min_learning_rate}",
        )

    def build(self, optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> dict[str, Any]:
        """A BudgetSchedule stepped after every update, reading the trainer's budget."""
        peak = optimizer.defaults["lr"]
        schedule = BudgetSchedule(
            optimizer,
            budget_spent(trainer),
            self.warmup_steps,
            self.decay_fraction,
            final_factor=min(self.min_learning_rate / peak, 1.0),
        )
        return {"scheduler": schedule, "interval": "step"}


def budget_spent(trainer: L.Trainer) -> Callable[[], float]:
    """A function giving the share of the Trainer's budget spent, the same on every rank.

    The share of updates (of `max_steps`, or of `max_epochs` epochs) or of time (of
    `max_time`; validation time counts, as it does for stopping), whichever is larger.
    """
    total_steps = trainer.estimated_stepping_batches
    if not 0 < total_steps < math.inf:
        total_steps = math.inf  # neither max_steps nor max_epochs bound the run
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    timed = timer is not None and timer.time_remaining() is not None
    if math.isinf(total_steps) and not timed:
        raise Seq2SeqError(
            "the Budget schedule needs a budget: set trainer.max_steps, trainer.max_epochs"
            " or trainer.max_time"
        )

    def spent() -> float:
        share = trainer.global_step / total_steps
        if timed:
            remaining, elapsed = timer.time_remaining(), timer.time_elapsed()
            # clocks differ across ranks; replicas must all use rank 0's learning rate
            share = max(share, trainer.strategy.broadcast(elapsed / (elapsed + remaining)))
        return share

    return spent


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
        """The base rates times the warm-up / hold / decay factor at this update."""
        step, progress = self.last_epoch, self.progress()
        factor = warmup_stable_decay(
            step, progress, self.warmup_steps, self.decay_fraction, self.final_factor
        )
        return [base_lr * factor for base_lr in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state without the optimizer and the progress function."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "progress")}


SCHEDULES: tuple[type[Schedule], ...] = (Constant, Plateau, InverseSqrt, Budget)
