"""TranslationCLI: LightningCLI over TranslationModule and TranslationDataModule.

`python train.py fit|validate|test|predict --config CFG [--section.option VALUE ...]`. Besides
what LightningCLI gives, it
- links derived values: the model's vocabulary sizes come from the data's `vocab_size`;
- keeps checkpoints in `<default_root_dir>/checkpoints` unless a callback names a directory,
  so `--ckpt_path last` finds the previous run's `last.ckpt`;
- logs to TensorBoard and to metrics.csv / grad_flow.csv under `<default_root_dir>` unless
  `trainer.logger` is given (a new fit there starts the CSV files anew), and leaves train.log,
  learning_curves.png and the validation hypotheses there (seq2seq/reports.py);
- leaves distribution of batches to the data module's sampler (`use_distributed_sampler`
  false), which keeps length buckets and gives every rank as many batches;
- always runs the gradient-health callback (`--gradient_health.every_n_steps 0` turns it off),
  skips non-finite updates (`--skip_nonfinite.max_in_a_row`), logs target tokens per second,
  saves `last.ckpt` at the last update of every run (also one that ends before it validates)
  and a resumable `last.ckpt` on Ctrl-C, writes checkpoints atomically and loads them with
  `weights_only=True` (seq2seq/checkpoint.py);
- `--test_after_fit true` tests the best checkpoint when training ends and prints test BLEU;
- adds the training precision `auto`, the default: `bf16-mixed` where the accelerator has fast
  bf16 GEMMs, `32-true` elsewhere (TranslationTrainer), and warns when `bf16-mixed` is asked
  of a CPU without fast bf16 (see `has_fast_bf16`);
- turns a `Seq2SeqError` into one line on stderr and exit status 1.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from jsonargparse import ArgumentError
from jsonargparse._deprecated import JsonargparseDeprecationWarning
from lightning.fabric.connector import _PRECISION_INPUT
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import Accelerator, CPUAccelerator, CUDAAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from seq2seq.allocator import keep_freed_memory
from seq2seq.callbacks import (
    CheckpointOnInterrupt,
    GradientHealth,
    SaveFinalUpdate,
    SkipNonFiniteUpdates,
    TargetTokenThroughput,
    ValidateFinalUpdate,
)
from seq2seq.checkpoint import current_hyperparameters, load_checkpoint, save_checkpoint
from seq2seq.datamodule import TranslationDataModule
from seq2seq.errors import Seq2SeqError, one_line
from seq2seq.files import make_directory
from seq2seq.lit_module import TranslationModule
from seq2seq.model.autocast import has_fast_bf16
from seq2seq.reports import (
    EvaluationReport,
    LearningCurves,
    MetricsFiles,
    RunLog,
    how_training_ended,
)

SUBCOMMANDS = ("fit", "validate", "test", "predict")
NOISE = re.compile(r"💡 Tip|(GPU|TPU|HPU|IPU) available")
TrainingPrecision = Literal["auto"] | _PRECISION_INPUT


class TranslationTrainer(Trainer):
    """Lightning's Trainer with one more precision, `auto` (the default): `bf16-mixed` where the
    device it trains on has fast bf16 GEMMs (`has_fast_bf16`: CUDA GPUs from Ampere on, CPUs
    with AMX or AVX-512 BF16), `32-true` elsewhere, where bf16 is emulated and slow."""

    def __init__(self, precision: TrainingPrecision | None = "auto", **kwargs: Any) -> None:
        if precision == "auto":
            precision = auto_precision(kwargs.get("accelerator", "auto"))
        super().__init__(precision=precision, **kwargs)


def auto_precision(accelerator: str | Accelerator) -> str:
    """The precision `auto` stands for on `accelerator` (a Trainer's `accelerator` argument):
    `bf16-mixed` when the device it picks has fast bf16, else `32-true`."""
    if isinstance(accelerator, Accelerator):
        device = {CUDAAccelerator: "cuda", CPUAccelerator: "cpu"}.get(type(accelerator))
    elif accelerator in ("auto", "gpu") and torch.cuda.is_available():  # Lightning's choice
        device = "cuda"
    else:  # without CUDA, "gpu" is another kind (Apple's MPS) and "auto" may be the CPU
        device = {"auto": "cpu", "cuda": "cuda", "cpu": "cpu"}.get(accelerator)
    fast = device is not None and has_fast_bf16(torch.device(device))
    return "bf16-mixed" if fast else "32-true"


class SafeCheckpointIO(CheckpointIO):
    """Lightning's checkpoint I/O through seq2seq's atomic save and weights-only load."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        """Save atomically (seq2seq.checkpoint.save_checkpoint)."""
        save_checkpoint(checkpoint, path)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load with weights_only=True; a clear error for a bad file."""
        return load_checkpoint(path, map_location if map_location is not None else "cpu")

    def remove_checkpoint(self, path: str | Path) -> None:
        """Delete a checkpoint the callback no longer keeps."""
        Path(path).unlink(missing_ok=True)


class TranslationCLI(LightningCLI):
    """LightningCLI with seq2seq's links, defaults, callbacks and checkpoint I/O."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """The data -> model links, seq2seq's callbacks and `--test_after_fit`."""
        parser.link_arguments("data.vocab_size", "model.architecture.src_vocab_size")
        parser.link_arguments("data.vocab_size", "model.architecture.tgt_vocab_size")
        parser.link_arguments("model.init_from", "data.tokenizer_from")  # fine-tuning
        parser.set_defaults(
            {"trainer.use_distributed_sampler": False, "trainer.enable_model_summary": False}
        )
        # in this order: gradient health logs an update's gradients before a skip drops them
        parser.add_lightning_class_args(GradientHealth, "gradient_health")
        parser.add_lightning_class_args(SkipNonFiniteUpdates, "skip_nonfinite")
        parser.add_argument(
            "--test_after_fit", type=bool, default=False, help="test the best checkpoint after fit"
        )

    def _parse_ckpt_path(self) -> None:
        """Take `--ckpt_path`'s hyperparameters into the model's configuration, as LightningCLI
        does, but read through load_checkpoint (a clear error for a missing, corrupt or unsafe
        file) and in this version's form (checkpoint.current_hyperparameters)."""
        subcommand = self.config.get("subcommand")
        path = self._ckpt_path()
        if not path or path in ("last", "best", "hpc"):
            return
        hyperparameters = load_checkpoint(path).get("hyper_parameters", {})
        hyperparameters = current_hyperparameters(hyperparameters)
        hyperparameters.pop("_instantiator", None)
        if hyperparameters:
            given = self.config[subcommand]["model"].as_dict()
            replaced = replaced_settings(given, hyperparameters, "model.")
            if replaced:
                rank_zero_warn(f"the checkpoint's settings replace {'; '.join(replaced)}")
            model = {subcommand: {"model": hyperparameters}}
            self.config = self.parser.parse_object(model, self.config)

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The Trainer with seq2seq's loggers, checkpoint I/O and callbacks."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        root = trainer_config.get("default_root_dir") or "."
        make_directory(root)
        if trainer_config.get("logger") in (None, True):  # not configured: ours, under the root
            continues = self._continues_a_run(Path(root))
            metrics = MetricsFiles(root, continues)
            kwargs["logger"] = [TensorBoardLogger(root, name="tensorboard"), metrics]
        plugins = trainer_config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            kwargs["plugins"] = [*plugins, SafeCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        if (
            trainer.precision == "bf16-mixed"
            and isinstance(trainer.accelerator, CPUAccelerator)
            and not has_fast_bf16(torch.device("cpu"))
        ):
            rank_zero_warn(
                "bf16-mixed on a CPU without AMX or AVX-512 BF16: bf16 is emulated here and"
                " many times slower than --trainer.precision 32-true"
            )
        trainer.callbacks += [
            TargetTokenThroughput(),
            CheckpointOnInterrupt(),
            SaveFinalUpdate(),
            ValidateFinalUpdate(),
            EvaluationReport(),
            LearningCurves(),
        ]
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        return trainer

    def _ckpt_path(self) -> str | None:
        """The subcommand's `--ckpt_path` (None without a subcommand or the option)."""
        subcommand = self.config.get("subcommand")
        return self.config[subcommand].get("ckpt_path") if subcommand else None

    def _continues_a_run(self, root: Path) -> bool:
        """Whether this subcommand continues the run in `root` (all but a `fit` without
        `--ckpt_path`); a new run there is warned that it replaces an earlier run's metrics."""
        if self.config.get("subcommand") != "fit" or self._ckpt_path():
            return True
        if (root / "metrics.csv").is_file():
            rank_zero_warn(
                f"{root} holds an earlier run's metrics.csv: this new run writes it anew"
                " (--ckpt_path last continues that run instead; TensorBoard keeps both)"
            )
        return False

    def _run_subcommand(self, subcommand: str) -> None:
        """The subcommand, its console also in the run's train.log (reports.py)."""
        log = (
            RunLog(self.trainer.default_root_dir, subcommand)
            if self.trainer.is_global_zero
            else None
        )
        try:
            super()._run_subcommand(subcommand)
        finally:
            if log is not None:
                log.close()

    def before_fit(self) -> None:
        """The model's size in one line (instead of Lightning's summary table); a test after
        fit without a test corpus is said before training, not after it."""
        parameters = sum(p.numel() for p in self.model.parameters())
        rank_zero_info(f"model: {parameters:,} parameters, precision {self.trainer.precision}")
        if self.config[self.subcommand].test_after_fit and not self.datamodule.has_split("test"):
            rank_zero_warn("the corpus has no test set: the test after training is skipped")

    def after_fit(self) -> None:
        """Say when and why training ended; with `--test_after_fit`, test the best checkpoint
        and print test BLEU."""
        if not self.trainer.interrupted:
            rank_zero_info(how_training_ended(self.trainer))
        if self.config[self.subcommand].test_after_fit and self.datamodule.has_split("test"):
            has_best = bool(getattr(self.trainer.checkpoint_callback, "best_model_path", ""))
            self.trainer.test(
                self.model, datamodule=self.datamodule, ckpt_path="best" if has_best else None
            )


def check_config_files(args: list[str]) -> None:
    """A config file that is not valid YAML is an error naming the file and the line (the
    parser would name "<unicode string>")."""
    paths = [value for flag, value in itertools.pairwise(args) if flag in ("--config", "-c")]
    paths += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    for path in paths:
        if Path(path).is_file():
            try:
                with open(path, encoding="utf-8") as config:
                    yaml.safe_load(config)
            except (yaml.YAMLError, UnicodeDecodeError) as error:
                raise Seq2SeqError(f"{path} is not valid YAML: {one_line(error)}") from error


def replaced_settings(given: dict, saved: dict, prefix: str) -> list[str]:
    """`name: given -> saved` for every setting a checkpoint's value replaces (nested dicts
    compared key by key; settings the configuration does not hold, such as linked ones, left
    out)."""
    replaced = []
    for key, value in saved.items():
        mine = given.get(key, value)
        if isinstance(value, dict) and isinstance(mine, dict):
            replaced += replaced_settings(mine, value, f"{prefix}{key}.")
        elif mine != value:
            replaced.append(f"{prefix}{key}: {mine!r} -> {value!r}")
    return replaced


def quiet_console() -> None:
    """Leave out of the console what is not the user's to act on: Lightning's advertisements
    and accelerator census, and deprecation warnings raised inside Lightning's own calls."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_noise)
    warnings.filterwarnings("ignore", category=JsonargparseDeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # `seq2seq prepare ...` passes its own arguments while sys.argv holds the command's
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")


def _not_noise(record: logging.LogRecord) -> bool:
    return not NOISE.match(record.getMessage())


def build_cli(
    args: list[str] | None = None, run: bool = True, prog: str = "train.py"
) -> TranslationCLI:
    """Parse `args` (default: the command line) and, when `run`, run the subcommand; `prog`
    names the command in usage and help."""
    check_config_files(sys.argv[1:] if args is None else args)
    quiet_console()
    return TranslationCLI(
        TranslationModule,
        TranslationDataModule,
        trainer_class=TranslationTrainer,
        save_config_kwargs={"overwrite": True},
        # parse errors raise instead of printing the usage: main() makes them one line
        parser_kwargs={
            "prog": prog,
            "exit_on_error": False,
            **{c: {"exit_on_error": False} for c in SUBCOMMANDS},
        },
        auto_configure_optimizers=False,  # the module's configure_optimizers is the one path
        args=args,
        run=run,
    )


def main(args: list[str] | None = None, prog: str = "train.py") -> None:
    """`train.py` (and `seq2seq train`): run the subcommand; a user error is one line and exit
    status 1. Each rank of a multi-process run shuts its process group down when the run ends."""
    keep_freed_memory()
    try:
        build_cli(args, prog=prog)
    except (Seq2SeqError, ArgumentError, MisconfigurationException) as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(1)
    close_process_group()


def close_process_group() -> None:
    """Destroy the distributed process group, if any, as torch asks of every rank before it
    exits. Lightning does so for NCCL alone; a gloo group (DDP on CPUs) left to interpreter
    shutdown can abort the process there, after the run's work is done ("terminate called
    without an active exception": gloo's threads outliving the group's owner). Only after a run
    that succeeded: a rank that failed may leave others waiting in a collective."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
