"""A search's rows and source length padded to a few fixed counts, so that its shapes recur.

A step's shapes follow its row count, which changes whenever a sentence finishes and differs
from batch to batch, and the batch's source length; a cache keyed on shapes (oneDNN's bf16 GEMM
primitives on the CPU) or a captured CUDA graph pays only for shapes that come back. Both are
padded up to the next count of a geometric ladder (`per_doubling` counts from n to 2n: at most
1/per_doubling of them padding): the source with positions past every sentence's length
(`padded_columns`, before encoding), the decoder's rows with copies of the first sentence's
(`padded`, which wraps a model's step and state, strategy-blind). Every step computes the
padding rows too and drops their results and the padding positions' attention, so strategies
see only the real rows and columns. Shapes: B sentences, R rows, K rows a sentence, V
vocabulary, S source length; primes mark the padded counts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from seq2seq.decoding.step_api import StepFunction


def bucket(count: int, per_doubling: int) -> int:
    """The ladder's smallest count of at least `count` (0 for 0): every count below 2 x
    per_doubling, then per_doubling counts in each doubling, multiples of 2^k / per_doubling
    from 2^k."""
    stride = max(1, (1 << max(0, count.bit_length() - 1)) // per_doubling)
    return -(-count // stride) * stride


def padded_columns(src: torch.Tensor, per_doubling: int) -> torch.Tensor:
    """(B, S) source ids -> (B, S'): S' the ladder's count, the new positions copies of the
    last one (past every sentence's length, so masked whatever they hold)."""
    columns = src.shape[1]
    return torch.cat((src, src[:, -1:].expand(-1, bucket(columns, per_doubling) - columns)), 1)


@dataclass(frozen=True)
class PaddedState:
    """A model's search state whose first `sentences` sentences and first `rows` rows are the
    real ones, the rest padding up to the ladder's count; its source's first `columns`
    positions are the real ones."""

    state: Any  # the model's state: B' sentences, R' = B' x K rows, S' source positions
    sentences: int  # B, the real sentences
    rows: int  # R = B x K, the real rows
    columns: int  # S
    per_doubling: int

    @property
    def padded_rows(self) -> int:
        """R' = B' x K, the rows the model's state holds."""
        per_sentence = self.rows // max(1, self.sentences)
        return bucket(self.sentences, self.per_doubling) * per_sentence

    @classmethod
    def of(
        cls, state: Any, source: torch.Size, per_doubling: int, device: torch.device
    ) -> PaddedState:
        """The start `state` (one row per sentence) of a `source` (B, S) padded to S', with
        its rows padded."""
        batch, columns = source
        everyone = torch.arange(batch, device=device)
        start = cls(state, batch, batch, columns, per_doubling)  # not yet padded: its reorder pads
        return start.reorder(everyone, everyone)

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> PaddedState:
        """The real hypotheses `rows` (R,) and, where sentences leave, the real `sentences`
        (B,), with padding up to the ladder's count of the sentences that remain."""
        count = self.sentences if sentences is None else sentences.numel()
        per_sentence = rows.numel() // max(1, count)  # K (no sentences left: no rows)
        padding = bucket(count, self.per_doubling) - count
        index = torch.cat((rows, rows[:per_sentence].repeat(padding)))  # (R',)
        if sentences is not None:
            sentences = torch.cat((sentences, sentences[:1].expand(padding)))  # (B',)
        state = self.state.reorder(index, sentences)
        return replace(self, state=state, sentences=count, rows=rows.numel())


def padded(
    step: StepFunction, state: Any, source: torch.Size, per_doubling: int, device: torch.device
) -> tuple[StepFunction, PaddedState]:
    """The model's `step` and start `state` (of a `source` (B, S), its columns padded, a row a
    sentence, on `device`) wrapped so that the state's rows are padded to the ladder's counts:
    a step and state of the same API."""

    def padded_step(
        state: PaddedState, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, PaddedState, torch.Tensor]:
        """Tokens (R,) -> log_probs (R, V), the state, attention (R, S) of the real rows."""
        extra = tokens[:1].expand(state.padded_rows - state.rows)
        log_probs, inner, attention = step(state.state, torch.cat((tokens, extra)))  # (R', ...)
        real = attention[: state.rows, : state.columns]  # (R, S)
        return log_probs[: state.rows], replace(state, state=inner), real

    return padded_step, PaddedState.of(state, source, per_doubling, device)
