"""Helpers for tests that train through `train.py`'s command line on tiny corpora."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
from pathlib import Path

import lightning as L
import torch

from seq2seq import files
from seq2seq.lightning_cli import SafeCheckpointIO
from tests.conftest import write_corpus

REVERSAL_WORDS = ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op", "qr", "st", "uv", "wx"]


def reversal_corpus(root: Path, train_pairs: int = 3000, seed: int = 0) -> Path:
    """train/val/test where the target is the source's words in reverse order."""
    generator = random.Random(seed)

    def pairs(count: int) -> list[tuple[str, str]]:
        result = []
        for _ in range(count):
            words = generator.choices(REVERSAL_WORDS, k=generator.randint(3, 7))
            result.append((" ".join(words), " ".join(reversed(words))))
        return result

    for split, count in (("train", train_pairs), ("val", 100), ("test", 100)):
        write_corpus(root / split, pairs(count))
    return root


def tiny_run_args(corpus: Path, work: Path, **overrides: object) -> list[str]:
    """`train.py fit` options for a small model on a corpus written by the helpers above; fp32
    on every machine (precision auto would train in bf16 where bf16 is fast)."""
    options = {
        "data.corpus": "Files",
        "data.corpus.train": f"[{corpus / 'train'}]",
        "data.corpus.val": str(corpus / "val"),
        "data.corpus.test": str(corpus / "test"),
        "data.data_dir": str(work / "data"),
        "data.vocab_size": "40",
        "data.byte_fallback": "false",
        "data.max_tokens": "400",
        "data.eval_max_tokens": "300",
        "data.encode_workers": "1",
        "model.architecture.embedding_size": "32",
        "model.architecture.encoder_hidden_size": "32",
        "model.architecture.decoder_hidden_size": "64",
        "model.architecture.attention_size": "32",
        "model.learning_rate": "0.005",
        "model.scheduler": "Constant",
        "trainer.default_root_dir": str(work / "run"),
        "trainer.accelerator": "cpu",
        "trainer.devices": "1",
        "trainer.precision": "32-true",
        "trainer.gradient_clip_val": "1.0",
        "trainer.enable_progress_bar": "false",
        "trainer.enable_model_summary": "false",
        "trainer.logger": "false",
        "trainer.num_sanity_val_steps": "0",
        "trainer.callbacks+": "lightning.pytorch.callbacks.ModelCheckpoint",
        "trainer.callbacks.save_last": "true",
        "trainer.callbacks.save_top_k": "0",
        "seed_everything": "1",
    }
    options.update({key: str(value) for key, value in overrides.items()})
    return [f"--{key}={value}" for key, value in options.items()]


class RecordLearningRates(L.Callback):
    """Writes the learning rate every update ran with to `path` as JSON {global_step: rate}."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.rates: dict[int, float] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.rates[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_end(self, trainer, module) -> None:
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(self.rates))


class StopAt(L.Callback):
    """Stops training after `step` updates, as an interruption would, whatever the budget."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class RecordLosses(L.Callback):
    """Writes every update's loss to `path` as JSON {global_step: loss} (with accumulation: the
    loss of the update's last batch)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            self.losses[trainer.global_step] = float(outputs["loss"])

    def on_train_end(self, trainer, module) -> None:
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(self.losses))


class SaveRankParameters(L.Callback):
    """At the end of fit, every rank saves its parameters to `directory/rank{r}.pt`."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def on_train_end(self, trainer, module) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        torch.save(state, self.directory / f"rank{trainer.global_rank}.pt")


class SaveMetrics(L.Callback):
    """Rank zero writes the logged metrics to `path` as JSON when validation ends."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_validation_end(self, trainer, module) -> None:
        if trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(metrics))


class PoisonGradients(L.Callback):
    """At the given updates, one gradient turns NaN (`nan`) or all overflow (`explode`)."""

    def __init__(self, steps: list[int], kind: str = "nan") -> None:
        self.steps = set(steps)
        self.kind = kind

    def on_after_backward(self, trainer, module) -> None:
        if trainer.global_step not in self.steps:
            return
        with torch.no_grad():
            if self.kind == "nan":
                next(module.parameters()).grad.view(-1)[0] = float("nan")
            else:
                for parameter in module.parameters():
                    parameter.grad.mul_(1e38)  # the global norm overflows to inf


class NaNLoss(L.Callback):
    """At the given updates, the training loss becomes NaN (as a corrupt batch would make it)."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = set(steps)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        module.__dict__.pop("loss", None)
        if trainer.global_step in self.steps:
            honest = module.loss
            module.loss = lambda b: (honest(b)[0] * float("nan"), *honest(b)[1:])


class SnapshotSteps(L.Callback):
    """Keeps copies of the weights and Adam moments before and after every update."""

    def __init__(self) -> None:
        self.before: dict[int, dict[str, torch.Tensor]] = {}
        self.after: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.before[trainer.global_step] = self._state(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.after[trainer.global_step - 1] = self._state(trainer, module)

    @staticmethod
    def _state(trainer, module) -> dict[str, torch.Tensor]:
        state = {name: p.detach().clone() for name, p in module.named_parameters()}
        optimizer_state = trainer.optimizers[0].state
        for index, parameter in enumerate(module.parameters()):
            if "exp_avg" in optimizer_state.get(parameter, {}):
                state[f"exp_avg.{index}"] = optimizer_state[parameter]["exp_avg"].clone()
        return state


class Heartbeat(L.Callback):
    """Writes the number of finished updates to `path` after every update."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(str(trainer.global_step))
        partial.replace(self.path)  # a reader, or a kill, never sees a half-written count


class KillDuringSave(SafeCheckpointIO):
    """SIGKILLs its own process in the middle of the `kill_at`-th checkpoint save.

    The real save runs until the checkpoint bytes are on disk under the temporary name; the
    kill comes before the rename, the moment a non-atomic save would leave a truncated file.
    """

    def __init__(self, kill_at: int) -> None:
        self.kill_at = kill_at
        self.saves = 0

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        self.saves += 1
        if self.saves == self.kill_at:
            files.os.fsync = lambda descriptor: os.kill(os.getpid(), signal.SIGKILL)
        super().save_checkpoint(checkpoint, path, storage_options)


class RunsCode:
    """A pickle payload: unpickling it creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class FullDiskDuringSave(SafeCheckpointIO):
    """The `fail_at`-th checkpoint save finds the disk full: its fsync raises ENOSPC, as a
    full filesystem would when the data reach it."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.saves = 0

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        self.saves += 1
        if self.saves != self.fail_at:
            return super().save_checkpoint(checkpoint, path, storage_options)
        real_fsync = files.os.fsync

        def no_space(descriptor: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        files.os.fsync = no_space
        try:
            super().save_checkpoint(checkpoint, path, storage_options)
        finally:
            files.os.fsync = real_fsync
