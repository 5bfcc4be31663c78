"""One entry point for translating a batch of source ids: greedy when the beam is 1, else beam.

Shapes: B batch, S source length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from seq2seq.decoding.beam_search import Hypothesis, LengthPenalty, beam_search
from seq2seq.decoding.greedy import StepFunction, greedy_search, max_output_lengths


class Searchable(Protocol):
    """What search needs of a model: encode once, a start state, and the step API."""

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor): ...
    def initial_state(self, encoded): ...

    step: StepFunction


@dataclass(frozen=True)
class SearchOptions:
    """How to search.

    Args:
        beam_size: hypotheses kept per sentence; 1 is greedy search.
        nbest: hypotheses returned per sentence (at most beam_size).
        length_penalty: `gnmt` ((5 + |Y|) / 6)^alpha, `average` (|Y|) or `none`.
        alpha: exponent of the GNMT length penalty.
        max_output_ratio: longest output as a multiple of the source length...
        max_output_offset: ...plus this many tokens (EOS included).
        min_length: tokens before EOS is allowed (beam search).
    """

    beam_size: int = 5
    nbest: int = 1
    length_penalty: LengthPenalty = "gnmt"
    alpha: float = 0.6
    max_output_ratio: float = 1.5
    max_output_offset: int = 10
    min_length: int = 0


@torch.no_grad()
def search(
    model: Searchable,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    options: SearchOptions,
    bos_id: int,
    eos_id: int,
    keep_attention: bool = False,
) -> list[list[Hypothesis]]:
    """The best hypotheses of every sentence in (B, S) source ids, best first (with attention
    weights, (output length + 1, S), when `keep_attention`)."""
    state = model.initial_state(model.encode(src, src_lengths))
    limits = max_output_lengths(src_lengths, options.max_output_ratio, options.max_output_offset)
    limits = limits.to(src.device)
    if options.beam_size == 1 and options.nbest == 1:  # the fast path
        result = greedy_search(model.step, state, limits, bos_id, eos_id, keep_attention)
        hypotheses = []
        for row, (tokens, score) in enumerate(
            zip(result.tokens, result.scores.tolist(), strict=True)
        ):
            attention = (
                None if result.attention is None else result.attention[row, : len(tokens) + 1]
            )
            hypotheses.append([Hypothesis(tokens, score, score, attention)])
        return hypotheses
    return beam_search(
        model.step,
        state,
        limits,
        bos_id,
        eos_id,
        options.beam_size,
        options.nbest,
        options.length_penalty,
        options.alpha,
        options.min_length,
        keep_attention,
    )
