"""Ensemble: several models searched as one, through the step API every strategy drives.

Each step, every model takes its own step from its own state; the ensemble's distribution is the
mean of the models' probabilities, returned as its log (log of the mean probability, as fairseq
and Marian combine; OpenNMT-py averages log-probabilities instead). The mean of probabilities is
itself a distribution, so beam scores, length penalties and sampling mean what they mean for one
model; the mean of log-probabilities is not normalized, and one model's near-zero probability
vetoes a token the others agree on. The attention is the mean of the models' attention: they
share the tokenizer, so they attend over the same source subwords, and attention plots and the
coverage penalty see what the ensemble as a whole read.

Shapes: B sentences, R hypothesis rows, S source length, V' words every model scores, M models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from seq2seq.errors import Seq2SeqError
from seq2seq.model.seq2seq import Seq2Seq, StepOutput


class EnsembleState(NamedTuple):
    """Each model's own decoder state, reordered together."""

    members: tuple[Any, ...]

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> EnsembleState:
        """Every model's hypotheses `rows` (R',) and, where sentences leave, `sentences` (B',)."""
        return EnsembleState(tuple(state.reorder(rows, sentences) for state in self.members))


class Ensemble(nn.Module):
    """Models with one target vocabulary, searched as one (the `Searchable` protocol).

    Args:
        models: the models; their architectures may differ, their vocabularies may not.
    """

    def __init__(self, models: Sequence[Seq2Seq]) -> None:
        if not models:
            raise Seq2SeqError("an ensemble needs at least one model")
        sizes = sorted({model.config.tgt_vocab_size for model in models})
        if len(sizes) > 1:
            raise Seq2SeqError(
                f"an ensemble's models must share the target vocabulary, not sizes {sizes}"
            )
        super().__init__()
        self.members = nn.ModuleList(models)
        self.log_count = math.log(len(models))

    def output_words(self) -> torch.Tensor:
        """(V',) the target ids every model scores: the ensemble searches over those."""
        scored = self.members[0].decoder.target_words  # (V,)
        for model in self.members[1:]:
            scored = scored & model.decoder.target_words.to(scored.device)
        return scored.nonzero().squeeze(1)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Any, ...]:
        """Each model's encoding of the (B, S) sources."""
        return tuple(model.encode(src, src_lengths) for model in self.members)

    def search_weights(self) -> tuple[Any, ...]:
        """Each model's search weights (Seq2Seq.search_weights)."""
        return tuple(model.search_weights() for model in self.members)

    def initial_state(
        self,
        encoded: tuple[Any, ...],
        search_weights: tuple[Any, ...] | None = None,
        vocabulary: tuple[torch.Tensor, torch.Tensor | None] | None = None,
        hypotheses: int = 1,
    ) -> EnsembleState:
        """Each model's state before the first target token, over `vocabulary`'s words alone,
        if given, else over the words every model scores, for `hypotheses` rows a sentence
        (Seq2Seq.initial_state)."""
        weights = search_weights or (None,) * len(self.members)
        vocabulary = vocabulary or (self.output_words(), None)
        return EnsembleState(
            tuple(
                model.initial_state(encoding, own, vocabulary, hypotheses)
                for model, encoding, own in zip(self.members, encoded, weights, strict=True)
            )
        )

    def step(self, state: EnsembleState, tokens: torch.Tensor) -> StepOutput:
        """Previous tokens (R,) -> log of the models' mean probability (R, V'), the state, the
        models' mean attention (R, S)."""
        outputs = [
            model.step(own, tokens) for model, own in zip(self.members, state.members, strict=True)
        ]
        log_probs = torch.stack([output.log_probs for output in outputs])  # (M, R, V)
        attention = torch.stack([output.attention for output in outputs])  # (M, R, S)
        return StepOutput(
            log_probs.logsumexp(dim=0) - self.log_count,
            EnsembleState(tuple(output.state for output in outputs)),
            attention.mean(dim=0),
        )
