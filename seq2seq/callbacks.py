"""Lightning callbacks: throughput, non-finite updates, gradient health, checkpoints (the best
under a fixed name, the last update, on Ctrl-C), a moving average of the weights, the
prediction writer."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from seq2seq.data.batch import Batch
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, make_directory
from seq2seq.gradients import (
    GradientNorms,
    flow_through_time,
    mean_over_sequences,
    nonfinite_gradient_elements,
)
from seq2seq.plots import plot_gradient_flow


class TargetTokenThroughput(L.Callback):
    """Logs `train/tgt_tokens_per_s`: a batch's target tokens (subwords and EOS, no padding)
    over the time since the previous update ended. The first update of an epoch and the first
    after a validation are left out: their interval holds set-up or validation time."""

    def __init__(self) -> None:
        self.last_update_end: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The first interval of an epoch would include set-up time."""
        self.last_update_end = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The next interval would include validation."""
        self.last_update_end = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Batch, _: int
    ) -> None:
        """Log this update's target tokens per second."""
        now = time.perf_counter()
        if self.last_update_end is not None:
            tokens = (batch.tgt_out != PAD_ID).sum()  # a tensor: no host sync until logged
            rate = tokens / (now - self.last_update_end)
            pl_module.log("train/tgt_tokens_per_s", rate, batch_size=len(batch))
        self.last_update_end = now


class SkipNonFiniteUpdates(L.Callback):
    """Skips an update whose loss or gradient norm is not finite; too many in a row stop training.

    Runs after the other callbacks' `on_before_optimizer_step` (gradient health logs the bad
    gradients first) and before clipping. Dropping every gradient makes the optimizer leave
    weights and moments as they are. Counts are kept in checkpoints.

    Args:
        max_in_a_row: this many skipped updates in a row stop training with an error.
    """

    def __init__(self, max_in_a_row: int = 5) -> None:
        self.max_in_a_row = max_in_a_row
        self.skipped = 0
        self.in_a_row = 0
        self.loss: torch.Tensor | None = None

    def state_dict(self) -> dict[str, int]:
        """The counts, kept in checkpoints."""
        return {"skipped": self.skipped, "in_a_row": self.in_a_row}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Restore the counts of a resumed run."""
        self.skipped, self.in_a_row = state_dict["skipped"], state_dict["in_a_row"]

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        """Remember this update's loss."""
        self.loss = loss.detach()

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Drop every gradient of an update whose loss or gradient norm is not finite."""
        finite = bool(torch.isfinite(GradientNorms.of(pl_module.named_parameters()).total))
        if self.loss is not None:
            finite = finite and bool(torch.isfinite(self.loss))
        # every rank must agree, or DDP replicas would drift apart
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            self.in_a_row = 0
            return
        for parameter in pl_module.parameters():
            parameter.grad = None
        self.skipped += 1
        self.in_a_row += 1
        pl_module.log("train/skipped_steps", float(self.skipped), reduce_fx="max")
        rank_zero_warn(
            f"step {trainer.global_step}: non-finite loss or gradient norm, update skipped "
            f"({self.in_a_row} in a row, {self.skipped} in all)"
        )
        if self.in_a_row >= self.max_in_a_row:
            raise Seq2SeqError(
                f"training stopped at step {trainer.global_step}: {self.in_a_row} updates"
                " in a row had a non-finite loss or gradient norm; lower the learning rate or"
                " check the data"
            )


class GradientHealth(L.Callback):
    """Makes vanishing and exploding gradients visible while training.

    Every update it counts whether clipping fires (one pass over the gradients); every
    `every_n_steps` updates it logs, under `grad/`: the global L2 norm before clipping (what
    `clip_grad_norm_` returns), whether this update was clipped and the running fraction of
    clipped updates, the norm of each part of the model (embeddings, encoder, attention,
    decoder, output) and the non-finite counts.

    Every `probe_every_n_steps` updates (and before the first) it measures gradient flow through
    time on a fixed probe batch: ||dL/dh(t)|| of the top encoder layer's states at every source
    position t, both directions, in eval mode (no dropout), logged under `grad_flow/` and drawn in
    `<log dir>/grad_flow.png` (the first probe against the latest).

    Args:
        every_n_steps: updates between logged norms; 0 turns the callback off.
        probe_every_n_steps: updates between gradient-flow probes; 0 turns probing off.
        probe_sentences: sentences in the probe batch, the head of the first training batch.
    """

    def __init__(
        self, every_n_steps: int = 50, probe_every_n_steps: int = 500, probe_sentences: int = 16
    ) -> None:
        self.every_n_steps = every_n_steps
        self.probe_every_n_steps = probe_every_n_steps
        self.probe_sentences = probe_sentences
        self.updates = 0
        self.clipped_updates = 0
        self.nonfinite_updates = 0
        self.probe: Batch | None = None
        self.flows: dict[int, torch.Tensor] = {}  # global step -> (D, S) mean ||dL/dh(t)||

    def state_dict(self) -> dict[str, int]:
        """The running counts, kept in checkpoints."""
        return {
            "updates": self.updates,
            "clipped_updates": self.clipped_updates,
            "nonfinite_updates": self.nonfinite_updates,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Restore the counts of a resumed run."""
        self.updates = state_dict["updates"]
        self.clipped_updates = state_dict["clipped_updates"]
        self.nonfinite_updates = state_dict["nonfinite_updates"]

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Count this update and, every `every_n_steps`, log its gradient norms."""
        if self.every_n_steps <= 0:
            return
        norms = GradientNorms.of(pl_module.named_parameters())
        total = float(norms.total)
        clip = trainer.gradient_clip_val
        by_norm = trainer.gradient_clip_algorithm in (None, "norm")  # None: Lightning's default
        clipped = bool(clip) and by_norm and total > clip
        self.updates += 1
        self.clipped_updates += clipped
        nonfinite = (
            0 if math.isfinite(total) else nonfinite_gradient_elements(pl_module.parameters())
        )
        self.nonfinite_updates += nonfinite > 0
        if trainer.global_step % self.every_n_steps and not nonfinite:
            return
        metrics = {
            "grad/norm": total,
            "grad/clipped": float(clipped),
            "grad/clipped_fraction": self.clipped_updates / self.updates,
            "grad/nonfinite_elements": float(nonfinite),
            "grad/nonfinite_updates": float(self.nonfinite_updates),
        }
        metrics |= {f"grad/norm_{group}": float(v) for group, v in norms.by_module().items()}
        _log(trainer, metrics)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch, batch_idx: int
    ) -> None:
        """Take the probe batch from the first training batch, and probe before any update."""
        if self.probe is None and self.every_n_steps > 0 and self.probe_every_n_steps > 0:
            self.probe = batch.head(self.probe_sentences)
            self._probe(trainer, pl_module)  # the flow before the first update

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Batch, _: int
    ) -> None:
        """Probe every `probe_every_n_steps` updates."""
        if self.probe is not None and trainer.global_step % self.probe_every_n_steps == 0:
            self._probe(trainer, pl_module)

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.global_step in self.flows:
            return
        model, probe = pl_module.model, self.probe
        was_training = model.training
        model.eval()  # no dropout: the same probe gives comparable curves
        with torch.enable_grad():
            norms = flow_through_time(
                model.encoder.layers[-1],
                probe.src_lengths,
                lambda: pl_module.loss(probe)[0],
            )  # (D, B, S)
        model.train(was_training)
        flow = mean_over_sequences(norms).cpu()  # (D, S)
        self.flows[trainer.global_step] = flow
        metrics = {
            f"grad_flow/{direction}/t{t:03d}": float(flow[d, t])
            for d, direction in enumerate(("forward", "backward"))
            for t in range(flow.shape[1])
        }
        _log(trainer, metrics)
        self._plot(trainer)

    def _plot(self, trainer: L.Trainer) -> None:
        first, last = min(self.flows), max(self.flows)
        curves = {}
        for step in sorted({first, last}):
            for d, direction in enumerate(("forward", "backward")):
                curves[f"step {step}, {direction}"] = self.flows[step][d].numpy()
        # not trainer.log_dir: it broadcasts, and only rank zero gets here
        logger = trainer.loggers[0] if trainer.loggers else None
        directory = make_directory(getattr(logger, "log_dir", None) or trainer.default_root_dir)
        plot_gradient_flow(
            curves,
            directory / "grad_flow.png",
            xlabel="source position t",
            title="encoder ||dL/dh(t)||, probe batch",
        )


def _log(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


class BestCheckpoints(ModelCheckpoint):
    """Lightning's ModelCheckpoint (the `save_top_k` best by `monitor`, and `last.ckpt`) that
    also keeps `best.ckpt` in its directory: a relative link to the best checkpoint so far, so
    that commands can name a run's best model whatever the file is called."""

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's key: runs saved with Lightning's own class resume with this one."""
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save as ModelCheckpoint does, then point best.ckpt at the best."""
        super().on_validation_end(trainer, pl_module)
        self._link_best(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save as ModelCheckpoint does, then point best.ckpt at the best."""
        super().on_train_epoch_end(trainer, pl_module)
        self._link_best(trainer)

    def _link_best(self, trainer: L.Trainer) -> None:
        best = Path(self.best_model_path) if self.best_model_path else None
        if not trainer.is_global_zero or best is None or not best.is_file():
            return
        link = best.parent / "best.ckpt"
        if link.is_symlink() and os.readlink(link) == best.name:
            return
        temporary = best.parent / ".best.ckpt.link"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(best.name)
        os.replace(temporary, link)  # atomic: best.ckpt is never missing once it exists


class ExponentialMovingAverage(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging (validation and saved checkpoints use the average of the
    weights; checkpoints also carry the raw weights, to resume), whose test after fit tests the
    average, and whose saves after training keep the raw weights.

    Lightning's callback puts a checkpoint's raw weights back into the model whenever it loads
    one, which resuming needs; but then `trainer.test(ckpt_path="best")` after fit would test the
    raw weights of the checkpoint chosen for its average's validation score. Outside fitting,
    the checkpoint's `state_dict`, the average, stays loaded. And when training ends it copies
    the average into the model, so a checkpoint saved after that (the final update's
    `last.ckpt`) would carry the average as raw weights: the raw weights of the last update are
    kept for it (`final_weights`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.final_weights: dict[str, torch.Tensor] | None = None  # raw, once training ended

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """A fit starts: the average model is made (Lightning), no final weights yet."""
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self.final_weights = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Keep the raw weights, then put the average into the model."""
        self.final_weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """The average as the checkpoint's weights, the raw weights beside them."""
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self.final_weights is not None and "current_model_state" in checkpoint:
            checkpoint["current_model_state"] = self.final_weights

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Resuming a fit: the raw weights and the average, as Lightning restores them; else
        nothing (the model holds the average)."""
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class SaveFinalUpdate(L.Callback):
    """When training ends, a checkpoint holds its last update: a run that stops between two
    saves (`max_steps` in mid-epoch, before its first validation) writes `last.ckpt` here."""

    def __init__(self) -> None:
        self.saved_step = -1

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Note the update a checkpoint was just saved at."""
        self.saved_step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save `last.ckpt` unless the last update is in a checkpoint already."""
        if trainer.checkpoint_callback is not None and self.saved_step != trainer.global_step:
            trainer.save_checkpoint(_last_checkpoint_path(trainer), weights_only=False)


class ValidateFinalUpdate(L.Callback):
    """A run that reaches `max_steps` between two validations validates its last update, as
    Lightning does when a run stops for another reason (max_time, early stopping): without it
    the updates since the last validation never reach best.ckpt or the test after fit."""

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """At the last update, ask the loop to stop: a stopping loop validates first."""
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class CheckpointOnInterrupt(L.Callback):
    """Ctrl-C (SIGINT) or SIGTERM during training saves a resumable `last.ckpt`, then stops.

    The first signal only raises a flag; at the end of the running step (a consistent point:
    the update done, the counters Lightning resumes from in place) every rank agrees to stop, the
    checkpoint is written atomically and the process exits with the shell's status for the
    signal, 128 + its number (130 for SIGINT, 143 for SIGTERM). A second signal quits at once,
    without saving, with the same status.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous_handlers: dict[signal.Signals, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Catch SIGINT and SIGTERM while training."""
        if _in_main_thread():
            for signum in STOP_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Give the signals back to their previous handlers."""
        self._restore_handlers()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """Give the signals back to their previous handlers."""
        self._restore_handlers()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # the second: Lightning would turn an interrupt into 1
            print(f"\n{STOP_SIGNALS[signal.Signals(signum)]} again: quitting", file=sys.stderr)
            raise SystemExit(128 + signum)
        self.received = signal.Signals(signum)
        again = " (Ctrl-C again to quit without)" if signum == signal.SIGINT else ""
        print(
            f"\n{STOP_SIGNALS[self.received]}: saving a checkpoint after this step{again}",
            file=sys.stderr,
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, _: int
    ) -> None:
        """After a signal (on any rank): save `last.ckpt` and exit with 128 + its number."""
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        path = _last_checkpoint_path(trainer)
        trainer.save_checkpoint(path, weights_only=False)  # resumable: all state
        if trainer.is_global_zero:
            print(f"saved {path}; resume with --ckpt_path last", file=sys.stderr)
        # the shell's status for the signal; a rank that got none itself exits as for Ctrl-C.
        # SystemExit, not KeyboardInterrupt: Lightning turns that into status 1
        raise SystemExit(128 + (self.received or signal.SIGINT))

    def _restore_handlers(self) -> None:
        if _in_main_thread():
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
        self._previous_handlers = {}


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where `--ckpt_path last` will look: the checkpoint callback's directory."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath:
        return Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class PredictionWriter(BasePredictionWriter):
    """Writes `train.py predict` output: one translation per line, in input order.

    Every rank writes its own share (`<output>.rank<r>`, JSON lines of index and text); after a
    barrier rank zero merges the shares by index into `<output>` (through `atomic_write`) and
    removes them, so the result is complete or absent, never half-written.

    Args:
        output: path of the merged translations.
    """

    def __init__(self, output: str) -> None:
        super().__init__(write_interval="epoch")
        self.output = Path(output)

    def write_on_epoch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        predictions: list[Any],
        batch_indices: list[Any],
    ) -> None:
        """Write this rank's share, then rank zero merges all shares in input order."""
        share = self.output.with_name(f"{self.output.name}.rank{trainer.global_rank}")
        make_directory(share.parent)
        with atomic_write(share) as out:
            for batch in predictions:
                for index, text in batch:
                    out.write(json.dumps([index, text], ensure_ascii=False) + "\n")
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self._merge(trainer.world_size)
        trainer.strategy.barrier()

    def _merge(self, world_size: int) -> None:
        translations: dict[int, str] = {}
        shares = [self.output.with_name(f"{self.output.name}.rank{r}") for r in range(world_size)]
        for share in shares:
            for line in share.read_text(encoding="utf-8").splitlines():
                index, text = json.loads(line)
                translations[index] = text
        with atomic_write(self.output) as out:
            out.write("".join(translations[i] + "\n" for i in range(len(translations))))
        for share in shares:
            share.unlink()
