"""TranslationModule: loss, metrics, optimizers and translation around a Seq2Seq model.

Shapes: B batch, S source length, T target length, V target vocabulary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics.text import SacreBLEUScore

from seq2seq.data.batch import Batch
from seq2seq.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from seq2seq.decoding.search import SearchOptions, search
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluation import CorpusChrF
from seq2seq.gradients import GradientNorms
from seq2seq.model.loss import label_smoothed_loss
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig
from seq2seq.schedules import BudgetSchedule, inverse_sqrt_schedule

TOKENIZER_KEY = "seq2seq_tokenizer"
STAGES = ("val", "test")


class TranslationModule(L.LightningModule):
    """Trains and evaluates a Seq2Seq translation model.

    Args:
        architecture: the model's sizes, cell type, layer norm and dropout rates.
        label_smoothing: share of the target probability spread over the vocabulary.
        optimizer: `adam` or `adamw`.
        learning_rate: peak learning rate.
        weight_decay: L2 penalty (adam) or decoupled weight decay (adamw).
        scheduler: `plateau` (scale by `plateau_factor` when validation BLEU stalls),
            `inverse_sqrt` (linear warm-up for `warmup_steps`, then 1/sqrt(step)), `budget`
            (warm-up, hold, then linear decay to `min_learning_rate` over the last
            `decay_fraction` of the budget the Trainer sets: `max_steps`, `max_epochs` or
            `max_time`, whichever ends first) or `none`.
        plateau_factor: learning-rate factor when validation BLEU stops improving.
        plateau_patience: validations without improvement before the factor applies.
        warmup_steps: warm-up updates of the inverse square-root and budget schedules.
        decay_fraction: share of the budget over which the budget schedule decays.
        min_learning_rate: floor of the plateau schedule, end of the budget schedule.
        val_search: how validation decodes (default greedy).
        test_search: how testing and prediction decode (default beam 5).
        seed: base of the per-step random seed (dropout masks), for exact resumption.
        max_nonfinite_steps: updates with a non-finite loss or gradient norm are skipped; this
            many in a row stop training.
    """

    def __init__(
        self,
        architecture: Seq2SeqConfig = Seq2SeqConfig(),
        label_smoothing: float = 0.1,
        optimizer: Literal["adam", "adamw"] = "adam",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: Literal["plateau", "inverse_sqrt", "budget", "none"] = "plateau",
        plateau_factor: float = 0.5,
        plateau_patience: int = 1,
        warmup_steps: int = 1000,
        decay_fraction: float = 0.3,
        min_learning_rate: float = 1e-5,
        val_search: SearchOptions = SearchOptions(beam_size=1),
        test_search: SearchOptions = SearchOptions(beam_size=5),
        seed: int = 1,
        max_nonfinite_steps: int = 5,
    ) -> None:
        super().__init__()
        if not 0.0 < decay_fraction <= 1.0:
            raise Seq2SeqError(f"decay_fraction must lie in (0, 1], got {decay_fraction}")
        if warmup_steps < (1 if scheduler == "inverse_sqrt" else 0):
            raise Seq2SeqError(f"warmup_steps {warmup_steps} is too small for {scheduler}")
        # checkpoints store plain types (loadable with weights_only=True); rebuild the dataclasses
        architecture = _as(Seq2SeqConfig, architecture)
        self.searches = {
            "val": _as(SearchOptions, val_search),
            "test": _as(SearchOptions, test_search),
        }
        self.save_hyperparameters(
            {
                **self._init_arguments(locals()),
                "architecture": asdict(architecture),
                "val_search": asdict(self.searches["val"]),
                "test_search": asdict(self.searches["test"]),
            }
        )
        self.model = Seq2Seq(architecture)
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict({"bleu": SacreBLEUScore(tokenize="13a"), "chrf": CorpusChrF()})
                for stage in STAGES
            }
        )
        self.tokenizer: Tokenizer | None = None
        self._last_step_end: float | None = None
        self._gradient_norms: GradientNorms | None = None
        self._last_loss: torch.Tensor | None = None
        self.skipped_steps = 0
        self._nonfinite_in_a_row = 0

    @classmethod
    def restore(cls, checkpoint: dict[str, Any]) -> TranslationModule:
        """The module a checkpoint dict (see seq2seq/checkpoint.py) holds, tokenizer included."""
        module = cls(**checkpoint["hyper_parameters"])
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        return module

    @staticmethod
    def _init_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
        skipped = ("self", "__class__", "architecture", "val_search", "test_search")
        return {k: v for k, v in arguments.items() if k not in skipped}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and datamodule.tokenizer is not None:
            self.tokenizer = datamodule.tokenizer

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Embed the SentencePiece models: the checkpoint alone is enough to translate.

        A checkpoint never holds non-finite weights: saving one is refused.
        """
        assert self.tokenizer is not None, "no tokenizer to store: train through a datamodule"
        broken = [k for k, v in checkpoint["state_dict"].items() if not v.isfinite().all()]
        if broken:
            raise Seq2SeqError(f"refusing to save non-finite weights ({', '.join(broken[:3])})")
        checkpoint[TOKENIZER_KEY] = {
            "src": self.tokenizer.src_model,
            "tgt": self.tokenizer.tgt_model,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's tokenizer, after checking it fits this model and this data."""
        if TOKENIZER_KEY not in checkpoint:
            raise Seq2SeqError("not a seq2seq checkpoint: it holds no tokenizer")
        models = checkpoint[TOKENIZER_KEY]
        own = self.state_dict()
        for name, tensor in checkpoint["state_dict"].items():
            if name in own and own[name].shape != tensor.shape:
                raise Seq2SeqError(
                    f"the checkpoint does not fit this model: {name} is {tuple(tensor.shape)}"
                    f" there and {tuple(own[name].shape)} here (another vocabulary or size?)"
                )
        if self.tokenizer is not None and (
            (self.tokenizer.src_model, self.tokenizer.tgt_model) != (models["src"], models["tgt"])
        ):
            raise Seq2SeqError(
                "the checkpoint was trained with another tokenizer than this data's: use the"
                " data settings (corpus, vocab_size, data_dir) it was trained with"
            )
        self.tokenizer = Tokenizer(models["src"], models["tgt"])

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        # dropout masks from (seed, step, rank) alone: a resumed run repeats them exactly
        torch.manual_seed(hash((self.hparams.seed, self.global_step, self.global_rank)) % 2**63)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, nll, tokens = self.loss(batch)
        self._last_loss = loss.detach()
        now = time.perf_counter()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("train/ppl", nll.clamp(max=50.0).exp(), batch_size=len(batch))  # no host sync
        if self._last_step_end is not None:
            self.log(
                "train/tgt_tokens_per_s",
                tokens / (now - self._last_step_end),
                batch_size=len(batch),
            )
        self._last_step_end = now
        return loss

    def gradient_norms(self) -> GradientNorms:
        """Norms of this update's gradients, computed once per update (callbacks share them)."""
        if self._gradient_norms is None:
            self._gradient_norms = GradientNorms.of(self.named_parameters())
        return self._gradient_norms

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip an update whose loss or gradient norm is not finite; stop after too many.

        Runs after the callbacks' hook (they log the bad gradients) and before clipping.
        Dropping every gradient makes the optimizer leave weights and moments as they are.
        """
        norms, self._gradient_norms = self.gradient_norms(), None
        finite = bool(torch.isfinite(norms.total)) and (
            self._last_loss is None or bool(torch.isfinite(self._last_loss))
        )
        # every rank must agree, or DDP replicas would drift apart
        if self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            self._nonfinite_in_a_row = 0
            return
        for parameter in self.parameters():
            parameter.grad = None
        self.skipped_steps += 1
        self._nonfinite_in_a_row += 1
        self.log("train/skipped_steps", float(self.skipped_steps), reduce_fx="max")
        rank_zero_warn(
            f"step {self.global_step}: non-finite loss or gradient norm, update skipped "
            f"({self._nonfinite_in_a_row} in a row, {self.skipped_steps} in all)"
        )
        if self._nonfinite_in_a_row >= self.hparams.max_nonfinite_steps:
            raise Seq2SeqError(
                f"training stopped at step {self.global_step}: {self._nonfinite_in_a_row} updates"
                " in a row had a non-finite loss or gradient norm; lower the learning rate or"
                " check the data"
            )

    def on_train_epoch_start(self) -> None:
        self._last_step_end = None  # the first step's interval would include set-up time

    def on_validation_start(self) -> None:
        self._last_step_end = None  # the next step's interval would include validation

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> list[tuple[int, str]]:
        """(dataset index, translation) pairs: callers restore input order from the indices."""
        translations = self.translate_batch(batch, self.searches["test"])
        return list(zip(batch.indices.tolist(), translations, strict=True))

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Label-smoothed loss, NLL per target token and the token count of a batch."""
        positions = batch.tgt_out != PAD_ID  # (B, T)
        logits = self.model(batch.src, batch.src_lengths, batch.tgt_in, positions)  # (N, V)
        target = batch.tgt_out[positions]  # (N,)
        return label_smoothed_loss(logits, target, self.hparams.label_smoothing)

    def _evaluate(self, batch: Batch, stage: str) -> None:
        loss, _, _ = self.loss(batch)
        self.log(f"{stage}/loss", loss, batch_size=len(batch), sync_dist=True)
        hypotheses = self.translate_batch(batch, self.searches[stage])
        metrics = self.metrics[stage]
        references = [[reference] for reference in batch.references]
        metrics["bleu"].update(hypotheses, references)
        metrics["chrf"].update(hypotheses, references)

    def _log_scores(self, stage: str) -> None:
        """Scores over the whole split: metric states are summed across ranks first."""
        for name, metric in self.metrics[stage].items():
            self.log(f"{stage}/{name}", 100 * metric.compute(), prog_bar=name == "bleu")
            metric.reset()

    def translate_batch(self, batch: Batch, options: SearchOptions) -> list[str]:
        """The best translation of every sentence of a batch, detokenized, in batch order."""
        assert self.tokenizer is not None, "no tokenizer: load a checkpoint or attach a datamodule"
        hypotheses = search(self.model, batch.src, batch.src_lengths, options, BOS_ID, EOS_ID)
        return self.tokenizer.decode_tgt([best[0].tokens for best in hypotheses])

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """The Trainer's clipping. Under bf16-mixed there is no loss scaler (the gradients are
        true ones), but Lightning's mixed-precision plugin refuses to clip for any fused
        optimizer, a guard meant for fp16 (whose fused step unscales internally): clip here."""
        plugin = self.trainer.precision_plugin
        if isinstance(plugin, MixedPrecision) and plugin.scaler is None and gradient_clip_val:
            algorithm = gradient_clip_algorithm or "norm"
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None  # fp16
        optimizer = build_optimizer(
            self.parameters(), hp.optimizer, hp.learning_rate, hp.weight_decay, fused=not scaled
        )
        if hp.scheduler == "none":
            return {"optimizer": optimizer}
        if hp.scheduler in ("inverse_sqrt", "budget"):  # stepped after every update
            schedule = (
                torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_sqrt_schedule(hp.warmup_steps))
                if hp.scheduler == "inverse_sqrt"
                else BudgetSchedule(
                    optimizer,
                    self._budget_spent(),
                    hp.warmup_steps,
                    hp.decay_fraction,
                    final_factor=min(hp.min_learning_rate / hp.learning_rate, 1.0),
                )
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"},
            }
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=hp.plateau_factor,
            patience=hp.plateau_patience,
            min_lr=hp.min_learning_rate,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": plateau, "monitor": "val/bleu", "interval": "epoch"},
        }

    def _budget_spent(self) -> Callable[[], float]:
        """A function giving the share of the Trainer's budget spent, the same on every rank.

        The share of updates (of `max_steps`, or of `max_epochs` epochs) or of time (of
        `max_time`; validation time counts, as it does for stopping), whichever is larger.
        """
        trainer = self.trainer
        total_steps = trainer.estimated_stepping_batches
        if not 0 < total_steps < math.inf:
            total_steps = math.inf  # neither max_steps nor max_epochs bound the run
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        timed = timer is not None and timer.time_remaining() is not None
        if math.isinf(total_steps) and not timed:
            raise Seq2SeqError(
                "the budget schedule needs a budget: set trainer.max_steps, trainer.max_epochs"
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


def build_optimizer(
    parameters, name: str, learning_rate: float, weight_decay: float, fused: bool = True
) -> torch.optim.Optimizer:
    """Adam or AdamW, fused into one kernel per step where torch has it (2.4+ on CPU) and
    `fused` (not under an fp16 loss scaler, whose gradients must be unscaled before clipping).

    Fused Adam on the reference model (6.6M parameters, 2-core CPU): 8 ms a step against
    28-31 ms for the default multi-tensor version; the update is the same (tested).
    """
    optimizer_class = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    options = {"fused": True} if fused and torch.__version__ >= "2.4" else {}
    return optimizer_class(parameters, lr=learning_rate, weight_decay=weight_decay, **options)


def _as(kind: type, value: object) -> object:
    """`value` as the dataclass `kind`, from a checkpoint's dict if need be."""
    return kind(**value) if isinstance(value, dict) else value
