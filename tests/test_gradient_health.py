"""The gradient-health callback, through `train.py fit` on the reversal task."""

import csv
import math
from pathlib import Path

import pytest
import torch

from seq2seq.lightning_cli import main
from tests.training_helpers import reversal_corpus, tiny_run_args

STEPS = 12


def logged_rows(run: Path, name: str = "metrics.csv") -> list[dict[str, str]]:
    with (run / name).open() as metrics:
        return list(csv.DictReader(metrics))


def train_with_spy(tmp_path: Path, monkeypatch, clip: float) -> tuple[Path, list[float]]:
    """Train STEPS updates logging every update; return the run dir and clip_grad_norm_'s norms."""
    returned: list[float] = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        norm = original(parameters, max_norm, *args, **kwargs)
        returned.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    corpus = reversal_corpus(tmp_path / "corpus", train_pairs=600)
    overrides = {
        "trainer.max_steps": STEPS,
        "trainer.logger": "null",
        "trainer.gradient_clip_val": clip,
        "gradient_health.every_n_steps": 1,
        "gradient_health.probe_every_n_steps": 5,
    }
    main(["fit", *tiny_run_args(corpus, tmp_path, **overrides)])
    return tmp_path / "run", returned


def column(rows: list[dict[str, str]], name: str) -> dict[int, float]:
    return {int(r["step"]): float(r[name]) for r in rows if r.get(name)}


def test_logged_norms_are_clip_grad_norms_and_the_clip_fraction_adds_up(
    tmp_path: Path, monkeypatch
) -> None:
    clip = 0.6  # about the median norm of this run's first updates
    run, returned = train_with_spy(tmp_path, monkeypatch, clip)
    rows = logged_rows(run)
    norms = column(rows, "grad/norm")
    assert sorted(norms) == list(range(STEPS))
    torch.testing.assert_close(
        torch.tensor([norms[s] for s in range(STEPS)]), torch.tensor(returned), rtol=1e-5, atol=0
    )
    fractions = column(rows, "grad/clipped_fraction")
    for step in range(STEPS):
        by_hand = sum(norm > clip for norm in returned[: step + 1]) / (step + 1)
        assert fractions[step] == pytest.approx(by_hand)
    parts = [column(rows, f"grad/norm_{g}") for g in ("embeddings", "encoder", "decoder")]
    parts += [column(rows, f"grad/norm_{g}") for g in ("attention", "output")]
    combined = math.sqrt(sum(part[STEPS - 1] ** 2 for part in parts))
    assert combined == pytest.approx(norms[STEPS - 1], rel=1e-5)
    assert all(v == 0 for v in column(rows, "grad/nonfinite_elements").values())


def test_tiny_clip_value_clips_every_update(tmp_path: Path, monkeypatch) -> None:
    run, returned = train_with_spy(tmp_path, monkeypatch, clip=1e-6)
    rows = logged_rows(run)
    assert all(norm > 1e-6 for norm in returned)
    assert set(column(rows, "grad/clipped").values()) == {1.0}
    assert column(rows, "grad/clipped_fraction")[STEPS - 1] == 1.0


def test_gradient_flow_probe_logs_every_position_and_plots(tmp_path: Path, monkeypatch) -> None:
    run, _ = train_with_spy(tmp_path, monkeypatch, clip=1.0)
    flow = logged_rows(run, "grad_flow.csv")  # one row per update, direction and position
    first = {
        int(r["step"]): float(r["norm"])
        for r in flow
        if r["direction"] == "forward" and r["position"] == "0"
    }
    assert sorted(first) == [0, 5, 10]  # before the first update, then every 5
    assert all(0 < v < math.inf for v in first.values())
    assert any(r["direction"] == "backward" and r["position"] == "2" for r in flow)
    assert "grad_flow/forward/t000" not in logged_rows(run)[0]  # not in metrics.csv
    assert (run / "tensorboard" / "version_0" / "grad_flow.png").stat().st_size > 10_000
