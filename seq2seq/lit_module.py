"""TranslationModule: the training, validation, test and predict steps around a Seq2Seq model.

It delegates the rest: the checkpoint layout to checkpoint.py, translation to translator.py,
optimizers and schedules to schedules.py, and throughput, non-finite updates and gradient health
to callbacks.py. Shapes: B batch, T target length, V target vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from seq2seq import schedules
from seq2seq.checkpoint import (
    MODEL_PREFIX,
    check_finite,
    check_fits,
    complete_state,
    load_checkpoint,
    load_weights,
    store_tokenizer,
    tokenizer_of,
)
from seq2seq.data.batch import Batch
from seq2seq.data.tokenizer import PAD_ID, Tokenizer
from seq2seq.decoding.search import SearchOptions
from seq2seq.errors import require
from seq2seq.metrics import TranslationScores
from seq2seq.model.loss import label_smoothed_loss
from seq2seq.model.seq2seq import OUTPUT_ROWS_MULTIPLE, Seq2Seq, Seq2SeqConfig
from seq2seq.plain import dataclass_of, from_plain, to_plain
from seq2seq.schedules import Budget, Schedule
from seq2seq.translator import Translator

STAGES = ("val", "test")


class TranslationModule(L.LightningModule):
    """Trains and evaluates a Seq2Seq translation model.

    Args:
        architecture: the model's sizes, cell type, layer norm and dropout rates.
        label_smoothing: share of the target probability spread over the vocabulary.
        optimizer: `adam` or `adamw`.
        learning_rate: peak learning rate.
        weight_decay: L2 penalty (adam) or decoupled weight decay (adamw).
        scheduler: the learning-rate schedule: `Budget`, `Plateau`, `InverseSqrt` or `Constant`
            (seq2seq/schedules.py), each with its own settings.
        val_search: how validation decodes.
        test_search: how testing and prediction decode; also what translating the checkpoint
            defaults to.
        seed: base of the per-step random seed (dropout masks), for exact resumption.
        init_from: fine-tuning: a checkpoint whose weights training starts from, with a fresh
            optimizer, schedule and step count (its tokenizer becomes the data's: the
            vocabulary stays). Not a resumption: `--ckpt_path` continues a run exactly.
        output_rows_multiple: shape bucketing of the output layer: its rows (the batch's target
            tokens) are padded to a multiple of this, so that its GEMMs see a few recurring
            shapes (oneDNN's bf16 GEMMs build a primitive per new shape; CUDA graphs need fixed
            shapes); 1 pads nothing. The padding adds no loss and no gradient.
        output_vocabulary: what the output layer scores: `targets`, the target words of the
            training corpus (plus BOS, EOS and <unk>; a reference word outside them counts as
            <unk> in validation losses), so that a step computes and normalizes no row for a
            word training never shows as a target (Multi30k's English side: 3,851 of the
            joint vocabulary's 8,000); `full`, every word of the target vocabulary.
    """

    def __init__(
        self,
        architecture: Seq2SeqConfig = Seq2SeqConfig(),
        label_smoothing: float = 0.1,
        optimizer: Literal["adam", "adamw"] = "adam",
        learning_rate: float = 3e-3,
        weight_decay: float = 0.0,
        scheduler: Schedule = Budget(),
        val_search: SearchOptions = SearchOptions(beam_size=1),
        test_search: SearchOptions = SearchOptions(),
        seed: int = 1,
        init_from: str | None = None,
        output_rows_multiple: int = OUTPUT_ROWS_MULTIPLE,
        output_vocabulary: Literal["targets", "full"] = "targets",
    ) -> None:
        super().__init__()
        schedules.check_optimizer_settings(learning_rate, weight_decay)
        require(0 <= label_smoothing < 1, f"label_smoothing must be in [0, 1): {label_smoothing}")
        require(
            output_rows_multiple >= 1,
            f"output_rows_multiple must be at least 1, not {output_rows_multiple}",
        )
        require(
            output_vocabulary in ("targets", "full"),
            f"output_vocabulary must be targets or full, not {output_vocabulary!r}",
        )
        # checkpoints hold plain types (weights_only loading): objects are stored as dicts
        architecture = dataclass_of(Seq2SeqConfig, architecture)
        self.scheduler = from_plain(Schedule, scheduler)
        searches = (dataclass_of(SearchOptions, s) for s in (val_search, test_search))
        self.searches = dict(zip(STAGES, searches, strict=True))
        self.save_hyperparameters(ignore=["architecture", "scheduler", "val_search", "test_search"])
        self.hparams.update(
            architecture=asdict(architecture),
            scheduler=to_plain(self.scheduler),
            val_search=asdict(self.searches["val"]),
            test_search=asdict(self.searches["test"]),
        )
        self.model = Seq2Seq(architecture)
        self.scores = nn.ModuleDict({stage: TranslationScores() for stage in STAGES})
        self.tokenizer: Tokenizer | None = None
        self.group_tokens = 0  # target tokens of the current accumulation group (_group_loss)
        self.translator: Translator | None = None  # built when an evaluation or prediction starts

    def setup(self, stage: str) -> None:
        """Take the data module's tokenizer (training, or evaluation on the training data);
        before training, the `init_from` weights and the words to score (a resumed run's own
        replace them later)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and datamodule.tokenizer is not None:
            self.tokenizer = datamodule.tokenizer
        if stage == "fit" and self.hparams.init_from:
            checkpoint = load_checkpoint(self.hparams.init_from)
            tokenizer_of(checkpoint, expected=self.tokenizer)
            load_weights(self.model, checkpoint, self.hparams.init_from)
        if stage == "fit" and datamodule is not None:
            self._choose_output_words(datamodule)

    def _choose_output_words(self, datamodule: Any) -> None:
        """Before training: score the training targets' words (`output_vocabulary`), and when
        fine-tuning, the words its checkpoint scores too."""
        if self.hparams.output_vocabulary == "full":
            return
        scored = self.model.decoder.target_words  # (V,)
        words = datamodule.target_words().to(scored.device)
        self.model.restrict_output(words | scored if self.hparams.init_from else words)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse non-finite weights; embed the tokenizer (the checkpoint alone translates)."""
        assert self.tokenizer is not None, "no tokenizer to store: train through a datamodule"
        check_finite(checkpoint["state_dict"])
        store_tokenizer(checkpoint, self.tokenizer)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's tokenizer, after checking it fits this model and this data."""
        complete_state(checkpoint["state_dict"], self.state_dict(), MODEL_PREFIX)
        check_fits(checkpoint["state_dict"], self.state_dict())
        check_finite(checkpoint["state_dict"], doing="load a checkpoint with")
        self.tokenizer = tokenizer_of(checkpoint, expected=self.tokenizer)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        """Seed from (seed, step, rank) alone: a resumed run repeats the dropout masks."""
        torch.manual_seed(hash((self.hparams.seed, self.global_step, self.global_rank)) % 2**63)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Label-smoothed loss, NLL per target token and the token count of a batch."""
        positions = batch.tgt_out != PAD_ID  # (B, T)
        multiple = self.hparams.output_rows_multiple
        logits = self.model(batch.src, batch.src_lengths, batch.tgt_in, positions, multiple)
        target = self.model.target_columns(batch.tgt_out[positions])  # (N,) of the (N', V')
        return label_smoothed_loss(logits, target, self.hparams.label_smoothing)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """The loss to minimize; loss and perplexity per token logged.

        An update's gradient is that of the mean loss over every target token it learns from:
        with gradient accumulation or several ranks too, where the batches' token counts differ
        (see `_group_loss`)."""
        loss, nll, tokens = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("train/ppl", nll.clamp(max=50.0).exp(), batch_size=len(batch))  # no host sync
        if self.trainer.accumulate_grad_batches == 1 and self.trainer.world_size == 1:
            return loss  # the batch is the whole update
        return self._group_loss(loss * tokens, tokens, batch_idx)

    def _group_loss(self, summed: torch.Tensor, tokens: int, batch_idx: int) -> torch.Tensor:
        """What to backpropagate for a batch's summed token losses so that the update's gradient
        is the sum over its accumulation group and all ranks divided by their tokens.

        Lightning divides each batch's loss by accumulate_grad_batches (A) and DDP averages the
        ranks' gradients. So: until the group's last batch, gradients gather the plain sums (loss
        x A); at the last batch, the group's tokens are summed over ranks (N), the gathered
        gradients are scaled by ranks / N, and the last loss by A x ranks / N."""
        trainer = self.trainer
        accumulate = trainer.accumulate_grad_batches
        if batch_idx % accumulate == 0:
            self.group_tokens = 0  # tokens of this rank's accumulation group so far
        self.group_tokens += tokens
        last = (batch_idx + 1) % accumulate == 0 or batch_idx + 1 >= trainer.num_training_batches
        if not last:
            return summed * accumulate
        count = torch.tensor(float(self.group_tokens), device=summed.device)
        scale = trainer.world_size / trainer.strategy.reduce(count, reduce_op="sum")
        for parameter in self.parameters():
            if parameter.grad is not None:
                parameter.grad.mul_(scale)
        return summed * accumulate * scale

    def on_validation_epoch_start(self) -> None:
        """A translator over the weights of now, in the trainer's precision."""
        self.translator = self._translator()

    def on_test_epoch_start(self) -> None:
        """A translator over the weights of now, in the trainer's precision."""
        self.translator = self._translator()

    def on_predict_epoch_start(self) -> None:
        """A translator over the weights of now, in the trainer's precision."""
        self.translator = self._translator()

    def validation_step(self, batch: Batch, batch_idx: int) -> list[str]:
        """Loss, and the batch's translations added to the split's scores (and returned)."""
        return self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Loss, and the batch's translations added to the split's scores."""
        self._evaluate(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> list[tuple[int, str]]:
        """(dataset index, translation) pairs: callers restore input order from the indices."""
        return list(zip(batch.indices.tolist(), self._translate(batch, "test"), strict=True))

    def on_validation_epoch_end(self) -> None:
        """Log the split's scores; drop the translator (the next update makes it stale)."""
        self._log_scores("val")
        self.translator = None

    def on_test_epoch_end(self) -> None:
        """Log the split's scores; drop the translator."""
        self._log_scores("test")
        self.translator = None

    def on_predict_epoch_end(self) -> None:
        """Drop the translator."""
        self.translator = None

    def _translator(self) -> Translator:
        assert self.tokenizer is not None, "no tokenizer: load a checkpoint or attach a datamodule"
        bf16 = str(self.trainer.precision).startswith("bf16")
        return Translator(self.model, self.tokenizer, "bf16" if bf16 else "fp32")

    def _translate(self, batch: Batch, stage: str) -> list[str]:
        translations = self.translator.translate_ids(batch.source_ids(), self.searches[stage])
        return [nbest[0].text for nbest in translations]

    def _evaluate(self, batch: Batch, stage: str) -> list[str]:
        loss, _, _ = self.loss(batch)
        self.log(f"{stage}/loss", loss, batch_size=len(batch), sync_dist=True)
        hypotheses = self._translate(batch, stage)
        self.scores[stage].update(hypotheses, batch.references)
        return hypotheses

    def _log_scores(self, stage: str) -> None:
        """Scores over the whole split: metric states are summed across ranks first."""
        for name, score in self.scores[stage].compute_and_reset().items():
            self.log(f"{stage}/{name}", score, prog_bar=name == "bleu")

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """The Trainer's clipping, also for a fused optimizer under bf16 (schedules.py)."""
        clipping = (gradient_clip_val, gradient_clip_algorithm)  # Lightning passes them by name
        if not schedules.clip_without_scaler(self.trainer, optimizer, *clipping):
            super().configure_gradient_clipping(optimizer, *clipping)

    def configure_optimizers(self) -> dict[str, Any]:
        """The optimizer (fused unless an fp16 loss scaler needs unscaled gradients) and the
        configured schedule."""
        hp = self.hparams
        scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None
        optimizer = schedules.build_optimizer(
            self.parameters(), hp.optimizer, hp.learning_rate, hp.weight_decay, fused=not scaled
        )
        schedule = self.scheduler.build(optimizer, self.trainer)
        return {"optimizer": optimizer, **({"lr_scheduler": schedule} if schedule else {})}
