"""What a run leaves for a person to read, in its directory (`trainer.default_root_dir`):

    train.log              the console's messages and warnings, without progress bars
    metrics.csv            one row per logged update: losses, rates, scores, gradient norms
    grad_flow.csv          the gradient-flow probes, one row per (update, direction, position)
    learning_curves.png    losses, validation BLEU and the learning rate against updates
    validation/step-N.txt  every validation hypothesis after update N, in corpus order

and, in the log, a few example translations at every validation, the scores of every test and
how training ended (`how_training_ended`).
"""

from __future__ import annotations

import csv
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, Timer
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from seq2seq.data.batch import Batch
from seq2seq.files import atomic_write, make_directory
from seq2seq.plots import plot_learning_curves

LOGGERS = ("lightning.pytorch", "lightning.fabric")  # where Lightning's and seq2seq's lines go
FLOW_COLUMNS = ("step", "direction", "position", "norm")


class RunLog:
    """`train.log` in the run directory while a command runs (rank zero): every line Lightning
    and seq2seq log, and the warnings, time-stamped; progress bars stay on the console only.
    `close()` ends it."""

    def __init__(self, root: str | Path, command: str) -> None:
        path = make_directory(root) / "train.log"
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        for name in LOGGERS:
            logging.getLogger(name).addHandler(self.handler)
        self.console_showwarning, warnings.showwarning = warnings.showwarning, self._warning
        self._write(f"{command} in {root}")

    def close(self) -> None:
        """Stop writing and give warnings back to the console alone."""
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(self.handler)
        warnings.showwarning = self.console_showwarning
        self.handler.close()

    def _warning(self, message: Any, category: type, *args: Any, **kwargs: Any) -> None:
        self.console_showwarning(message, category, *args, **kwargs)
        self._write(f"warning: {message}")

    def _write(self, line: str) -> None:
        self.handler.emit(logging.makeLogRecord({"msg": line}))


class EvaluationReport(L.Callback):
    """After every validation, `validation/step-N.txt` with every hypothesis in corpus order and
    `examples` of them (source, reference, hypothesis) in the log; after a test, its scores.

    Args:
        examples: example translations logged at every validation.
    """

    def __init__(self, examples: int = 3) -> None:
        self.examples = examples
        self.rows: list[tuple[int, str, str, str]] = []  # (index, source, reference, hypothesis)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start collecting this validation's translations."""
        self.rows = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's sources, references and the hypotheses validation_step returned."""
        sources = pl_module.tokenizer.src.decode(batch.source_ids())
        rows = zip(batch.indices.tolist(), sources, batch.references, outputs, strict=True)
        self.rows += rows

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the hypotheses and log the examples (rank zero, all ranks' rows)."""
        rows = _gathered(trainer, self.rows)
        if trainer.sanity_checking or not trainer.is_global_zero or not rows:
            return
        rows.sort()
        directory = make_directory(Path(trainer.default_root_dir) / "validation")
        with atomic_write(directory / f"step-{trainer.global_step:06d}.txt") as out:
            out.write("".join(hypothesis + "\n" for *_, hypothesis in rows))
        for number, (_, source, reference, hypothesis) in enumerate(rows[: self.examples], 1):
            rank_zero_info(
                f"example {number}: source: {source} | reference: {reference}"
                f" | hypothesis: {hypothesis}"
            )

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The test's scores, in the log as well as in Lightning's table."""
        scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        rank_zero_info("test: " + ", ".join(f"{k[5:]} {v:.2f}" for k, v in sorted(scores.items())))


def how_training_ended(trainer: L.Trainer) -> str:
    """When and why training stopped: `training ended after N updates: reason`."""
    stopped = [
        str(callback.stopping_reason_message).replace(" Signaling Trainer to stop.", "")
        for callback in trainer.callbacks
        if isinstance(callback, EarlyStopping)
        and callback.stopping_reason != EarlyStoppingReason.NOT_STOPPED
    ]
    timers = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
    if stopped:
        reason = f"early stopping: {stopped[0]}"
    elif timers and (timers[0].time_remaining() or 0.0) <= 0.0:
        reason = f"trainer.max_time was reached ({timers[0].time_elapsed():.0f} s of training)"
    elif trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        reason = f"trainer.max_steps {trainer.max_steps} was reached"
    elif trainer.max_epochs is not None and trainer.current_epoch >= trainer.max_epochs:
        reason = f"trainer.max_epochs {trainer.max_epochs} was reached"
    else:
        reason = "trainer.should_stop was set"
    return f"training ended after {trainer.global_step} updates: {reason}"


def _gathered(trainer: L.Trainer, rows: list) -> list:
    """Every rank's rows (each rank validated its own batches)."""
    if trainer.world_size == 1 or not torch.distributed.is_initialized():
        return list(rows)
    shares: list = [None] * trainer.world_size
    torch.distributed.all_gather_object(shares, rows)
    return [row for share in shares for row in share]


class LearningCurves(L.Callback):
    """`learning_curves.png`: the training loss (averaged over the updates since the previous
    point) and the learning rate every `log_every_n_steps` updates and before each validation,
    validation loss and BLEU at every validation; redrawn after each validation and when
    training ends."""

    def __init__(self) -> None:
        self.curves: dict[str, dict[int, float]] = {
            name: {} for name in ("train/loss", "val/loss", "val/bleu", "learning rate")
        }
        self.loss_sum: torch.Tensor | float = 0.0  # training losses since the last point,
        self.losses = 0  # summed on the device: no synchronization per update

    def state_dict(self) -> dict[str, dict[int, float]]:
        """The curves so far: a resumed run continues them."""
        return self.curves

    def load_state_dict(self, state_dict: dict[str, dict[int, float]]) -> None:
        """Continue the curves of the run being resumed."""
        self.curves = {name: dict(points) for name, points in state_dict.items()}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, _: int
    ) -> None:
        """Add the update's loss; a point every `log_every_n_steps` updates."""
        if outputs is not None:  # None: the update was skipped
            self.loss_sum = self.loss_sum + outputs["loss"].detach()
            self.losses += 1
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self._add_training_point(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Note the validation's loss and BLEU and redraw."""
        if trainer.sanity_checking:
            return
        self._add_training_point(trainer)
        for name in ("val/loss", "val/bleu"):
            if name in trainer.callback_metrics:
                self.curves[name][trainer.global_step] = float(trainer.callback_metrics[name])
        self._draw(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Redraw with the last updates."""
        self._add_training_point(trainer)
        self._draw(trainer)

    def _add_training_point(self, trainer: L.Trainer) -> None:
        if self.losses:
            step = trainer.global_step
            self.curves["train/loss"][step] = float(self.loss_sum) / self.losses
            self.curves["learning rate"][step] = trainer.optimizers[0].param_groups[0]["lr"]
            self.loss_sum, self.losses = 0.0, 0

    def _draw(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero and any(self.curves.values()):
            path = make_directory(trainer.default_root_dir) / "learning_curves.png"
            plot_learning_curves(self.curves, path)


class MetricsFiles(Logger):
    """Lightning logger writing `metrics.csv` (one row per logged update, a column per metric)
    and `grad_flow.csv` (the gradient-flow probes, one row per update, direction and position)
    in the run directory.

    Args:
        root: the run directory.
        continues: whether this run continues the files there (a resumed run; validation or
            testing of the run's checkpoints, whose rows join those of their update) or starts
            them anew (a new run: an earlier run's files are replaced at its first log, so
            that no row mixes two runs).
    """

    def __init__(self, root: str | Path, continues: bool = True) -> None:
        super().__init__()
        self.root = Path(root)
        self.rows = _read_rows(self.root / "metrics.csv") if continues else []
        self.flow = _read_rows(self.root / "grad_flow.csv") if continues else []

    @property
    def name(self) -> str:
        """The logger's name."""
        return "metrics"

    @property
    def version(self) -> int:
        """One version: the files live in the run directory."""
        return 0

    @property
    @rank_zero_experiment
    def experiment(self) -> None:
        """No experiment object: the files are written directly."""
        return None

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Hyperparameters are in config.yaml and the checkpoints, not here."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Merge into the row of `step` (gradient-flow probes into their file) and rewrite."""
        flow = {k: v for k, v in metrics.items() if k.startswith("grad_flow/")}
        row = next((r for r in self.rows if r["step"] == str(step)), None)
        if row is None:
            row = {"step": str(step)}
            self.rows.append(row)
        row |= {k: f"{v:.6g}" for k, v in metrics.items() if k not in flow}
        for key, value in flow.items():  # grad_flow/forward/t003
            _, direction, position = key.split("/")
            self.flow.append(
                {
                    "step": str(step),
                    "direction": direction,
                    "position": position[1:].lstrip("0") or "0",
                    "norm": f"{value:.6g}",
                }
            )
        make_directory(self.root)
        _write_rows(self.root / "metrics.csv", self.rows)
        if flow:  # rewritten only when probes came: it grows by dozens of rows a probe
            _write_rows(self.root / "grad_flow.csv", self.flow, FLOW_COLUMNS)


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as file:
        return [dict(row) for row in csv.DictReader(file)]


def _write_rows(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = ()) -> None:
    """Rows as CSV: `columns` if given, else step and epoch first and the rest sorted."""
    if not columns:
        present = list(dict.fromkeys(key for row in rows for key in row))
        first = [c for c in ("step", "epoch") if c in present]
        columns = (*first, *sorted(c for c in present if c not in first))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path) as out:
        out.write(text.getvalue())
