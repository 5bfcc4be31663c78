"""TranslationCLI: LightningCLI over TranslationModule and TranslationDataModule.

`python train.py fit|validate|test|predict --config CFG [--section.option VALUE ...]`. Besides
what LightningCLI gives, it
- links derived values: the model's vocabulary sizes come from the data's `vocab_size`;
- keeps checkpoints in `<default_root_dir>/checkpoints` unless a callback names a directory,
  so `--ckpt_path last` finds the previous run's `last.ckpt`;
- logs to TensorBoard and CSV under `<default_root_dir>` unless `trainer.logger` is given;
- leaves distribution of batches to the data module's sampler (`use_distributed_sampler`
  false), which keeps length buckets and gives every rank as many batches;
- `--test_after_fit true` tests the best checkpoint when training ends and prints test BLEU;
- turns a `Seq2SeqError` into one line on stderr and exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from seq2seq.datamodule import TranslationDataModule
from seq2seq.errors import Seq2SeqError
from seq2seq.lit_module import TranslationModule


class TranslationCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.architecture.src_vocab_size")
        parser.link_arguments("data.vocab_size", "model.architecture.tgt_vocab_size")
        parser.set_defaults({"trainer.use_distributed_sampler": False})
        parser.add_argument(
            "--test_after_fit", type=bool, default=False, help="test the best checkpoint after fit"
        )

    def instantiate_trainer(self, **kwargs) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):  # not configured: ours, under the root
            root = trainer_config.get("default_root_dir") or "."
            kwargs["logger"] = [
                TensorBoardLogger(root, name="tensorboard"),
                CSVLogger(root, name="csv"),
            ]
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        return trainer

    def after_fit(self) -> None:
        if self.config[self.subcommand].test_after_fit:
            has_best = bool(getattr(self.trainer.checkpoint_callback, "best_model_path", ""))
            self.trainer.test(
                self.model, datamodule=self.datamodule, ckpt_path="best" if has_best else None
            )


def build_cli(args: list[str] | None = None, run: bool = True) -> TranslationCLI:
    """Parse `args` (default: the command line) and, when `run`, run the subcommand."""
    return TranslationCLI(
        TranslationModule,
        TranslationDataModule,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # the module's configure_optimizers is the one path
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    try:
        build_cli(args)
    except Seq2SeqError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(1)
