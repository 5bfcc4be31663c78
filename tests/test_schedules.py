import io
import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Timer

from seq2seq.errors import Seq2SeqError
from seq2seq.plain import from_plain
from seq2seq.schedules import (
    Budget,
    BudgetSchedule,
    InverseSqrt,
    Schedule,
    budget_spent,
    build_optimizer,
    inverse_sqrt_schedule,
    warmup_stable_decay,
)


def test_inverse_sqrt_schedule() -> None:
    factor = inverse_sqrt_schedule(warmup_steps=100)
    assert factor(0) == pytest.approx(0.01)
    assert factor(50) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(1.0)
    assert factor(400) == pytest.approx(0.5)
    assert factor(10_000) == pytest.approx(math.sqrt(100 / 10_000))


@pytest.mark.parametrize(
    ("step", "progress", "expected"),
    [
        (1, 0.0, 0.1),  # warming up: step / warmup
        (5, 0.1, 0.5),
        (10, 0.1, 1.0),  # warm-up over: the peak
        (500, 0.7, 1.0),  # the decay starts at 1 - decay_fraction
        (600, 0.85, 0.01 + 0.99 * 0.5),  # half-way down the line
        (700, 1.0, 0.01),  # the budget's end: final_factor
        (800, 1.3, 0.01),  # past the budget (a run's last step after the clock ran out)
    ],
)
def test_warmup_stable_decay(step: int, progress: float, expected: float) -> None:
    factor = warmup_stable_decay(
        step, progress, warmup_steps=10, decay_fraction=0.3, final_factor=0.01
    )
    assert factor == pytest.approx(expected)


def test_warmup_stable_decay_without_warmup_starts_at_the_peak() -> None:
    assert warmup_stable_decay(0, 0.0, warmup_steps=0, decay_fraction=1.0, final_factor=0.0) == 1
    assert warmup_stable_decay(9, 0.25, warmup_steps=0, decay_fraction=1.0, final_factor=0.0) == (
        pytest.approx(0.75)
    )


def test_budget_schedule_follows_the_progress_it_is_given() -> None:
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([parameter], lr=2.0)
    spent = [0.0]
    schedule = BudgetSchedule(
        optimizer, lambda: spent[0], warmup_steps=2, decay_fraction=0.5, final_factor=0.1
    )
    learning_rates = []
    for share in (0.1, 0.5, 0.75, 1.0):
        optimizer.step()
        spent[0] = share
        schedule.step()
        learning_rates.append(optimizer.param_groups[0]["lr"])
    assert learning_rates == pytest.approx([1.0, 2.0, 2 * (0.1 + 0.9 * 0.5), 0.2])


def test_budget_schedule_state_is_plain_data_and_resumes() -> None:
    """Checkpoints load with weights_only=True: the progress function must not be in them."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = BudgetSchedule(optimizer, lambda: 0.9, 0, decay_fraction=0.2, final_factor=0.0)
    optimizer.step()
    schedule.step()
    buffer = io.BytesIO()
    torch.save(schedule.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert "progress" not in state

    resumed_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = BudgetSchedule(resumed_optimizer, lambda: 0.9, 0, 0.2, 0.0)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == schedule.last_epoch == 1
    assert resumed.get_last_lr() == pytest.approx([0.5])


def test_budget_schedule_refuses_a_decay_longer_than_the_budget() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="decay_fraction"):
        BudgetSchedule(optimizer, lambda: 0.0, 0, decay_fraction=1.5, final_factor=0.0)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_optimizer_updates_like_the_default_one(name: str) -> None:
    torch.manual_seed(0)
    weights = [torch.randn(40, 30), torch.randn(30)]
    gradients = [[torch.randn_like(w) for w in weights] for _ in range(5)]
    results = []
    for optimizer_of in (
        lambda ps: build_optimizer(ps, name, 1e-3, 0.01),
        lambda ps: (torch.optim.AdamW if name == "adamw" else torch.optim.Adam)(
            ps, lr=1e-3, weight_decay=0.01, foreach=False
        ),
    ):
        parameters = [torch.nn.Parameter(w.clone()) for w in weights]
        optimizer = optimizer_of(parameters)
        for step in gradients:
            for parameter, gradient in zip(parameters, step, strict=True):
                parameter.grad = gradient.clone()
            optimizer.step()
        results.append(parameters)
    for fused, plain in zip(*results, strict=True):
        torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-7)


def test_budget_share_is_the_time_share_under_max_time(monkeypatch) -> None:
    trainer = L.Trainer(max_time={"seconds": 200}, logger=False, enable_progress_bar=False)
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    spent = budget_spent(trainer)
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 50.0)
    assert spent() == pytest.approx(0.25)


def test_budget_share_is_the_larger_of_updates_and_time(monkeypatch) -> None:
    trainer = L.Trainer(
        max_steps=100, max_time={"seconds": 200}, logger=False, enable_progress_bar=False
    )
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    spent = budget_spent(trainer)
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 50.0)
    monkeypatch.setattr(type(trainer), "global_step", property(lambda self: 40))
    assert spent() == pytest.approx(0.4)
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 120.0)
    assert spent() == pytest.approx(0.6)


def test_budget_schedule_without_a_budget_is_refused() -> None:
    trainer = L.Trainer(max_epochs=-1, logger=False, enable_progress_bar=False)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(Seq2SeqError, match="the Budget schedule needs a budget"):
        Budget().build(optimizer, trainer)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Budget(decay_fraction=0.0), "decay_fraction must lie in"),
        (lambda: InverseSqrt(warmup_steps=0), "too small for InverseSqrt"),
        (lambda: Budget(warmup_steps=-1), "too small for Budget"),
    ],
)
def test_schedule_settings_are_checked(make, message: str) -> None:
    with pytest.raises(Seq2SeqError, match=message):
        make()


def test_schedules_rebuild_from_their_plain_form_only_as_schedules() -> None:
    plain = {"class_path": "seq2seq.schedules.Budget", "init_args": {"decay_fraction": 0.5}}
    assert from_plain(Schedule, plain) == Budget(decay_fraction=0.5)
    assert from_plain(Schedule, {"class_path": "Budget"}) == Budget()
    with pytest.raises(Seq2SeqError, match=r"unknown Schedule 'os\.system'"):
        from_plain(Schedule, {"class_path": "os.system", "init_args": {"command": "true"}})
