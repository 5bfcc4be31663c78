import io
import math

import pytest
import torch

from seq2seq.schedules import BudgetSchedule, inverse_sqrt_schedule, warmup_stable_decay


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
