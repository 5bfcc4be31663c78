"""What the gradient-health callback costs per training step, at its default frequency.

Trains the reference config (configs/multi30k_de_en.yaml) on real Multi30k batches through the
Lightning Trainer, alternating runs with the callback off and on. Two measurements:

- direct: the seconds spent inside the callback's hooks, split into the per-update part (norms,
  clip count), the logging steps (every 50: per-module norms, logger writes) and the probe
  (every 500: a forward and a backward of the probe batch), amortized at the default
  frequencies and divided by the mean step time;
- end to end: mean step time with the callback against without (noisier on a shared machine).

Prints one JSON object. Usage:

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/gradient_health.py [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict

import lightning as L

from seq2seq.callbacks import GradientHealth
from seq2seq.lightning_cli import build_cli

HOOKS = ("on_before_optimizer_step", "on_train_batch_start", "on_train_batch_end")


class StepTimes(L.Callback):
    """Wall-clock seconds between consecutive ends of training steps."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def time_hooks(callback: GradientHealth) -> dict[str, list[float]]:
    """Wrap the callback's hooks on the instance; returns seconds per call, by hook."""
    spent: dict[str, list[float]] = defaultdict(list)
    for name in HOOKS:
        hook = getattr(callback, name)

        def timed(*args, _hook=hook, _name=name, **kwargs):
            start = time.perf_counter()
            _hook(*args, **kwargs)
            spent[_name].append(time.perf_counter() - start)

        setattr(callback, name, timed)
    return spent


def run(steps: int, every_n_steps: int, probe_every: int, root: str) -> tuple:
    cli = build_cli(
        [
            "--config=configs/multi30k_de_en.yaml",
            f"--trainer.max_steps={steps}",
            "--trainer.limit_val_batches=0",
            "--trainer.callbacks=[]",  # early stopping and checkpoints watch validation
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={root}",
            f"--gradient_health.every_n_steps={every_n_steps}",
            f"--gradient_health.probe_every_n_steps={probe_every}",
            "--test_after_fit=false",
        ],
        run=False,
    )
    timer = StepTimes()
    cli.trainer.callbacks.append(timer)
    health = next(c for c in cli.trainer.callbacks if isinstance(c, GradientHealth))
    spent = time_hooks(health)
    cli.trainer.fit(cli.model, cli.datamodule)
    return timer.times[2:], spent  # the first steps warm up allocators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    options = parser.parse_args()
    default = GradientHealth()
    step_times = {"off": [], "on": []}
    per_update, logging, probes = [], [], []
    with tempfile.TemporaryDirectory() as root:
        for _ in range(options.rounds):
            step_times["off"] += run(options.steps, 0, 0, root)[0]
            # on, logging every 5 steps and probing every 10 so that each part is timed
            times, spent = run(options.steps, 5, 10, root)
            step_times["on"] += times
            hook = spent["on_before_optimizer_step"]
            logging += [t for i, t in enumerate(hook) if i % 5 == 0]
            per_update += [t for i, t in enumerate(hook) if i % 5 != 0]
            probes += [t for t in spent["on_train_batch_end"] if t > 1e-3]
            probes += [t for t in spent["on_train_batch_start"] if t > 1e-3]
    step = statistics.mean(step_times["off"])
    update_cost = statistics.mean(per_update)
    logging_extra = statistics.mean(logging) - update_cost
    probe_cost = statistics.median(probes)
    amortized = (
        update_cost
        + logging_extra / default.every_n_steps
        + probe_cost / default.probe_every_n_steps
    )
    print(
        json.dumps(
            {
                "steps_per_run": options.steps,
                "rounds": options.rounds,
                "mean_step_s_without": round(step, 4),
                "mean_step_s_with_logging_every_5": round(statistics.mean(step_times["on"]), 4),
                "per_update_hook_ms": round(1e3 * update_cost, 3),
                "logging_step_extra_ms": round(1e3 * logging_extra, 3),
                "probe_ms": round(1e3 * probe_cost, 1),
                "default_every_n_steps": default.every_n_steps,
                "default_probe_every_n_steps": default.probe_every_n_steps,
                "amortized_overhead_at_defaults_percent": round(100 * amortized / step, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
