"""Greedy search: the most probable token at every step, for a whole batch at once.

It knows nothing of the model: it drives any `step(state, tokens) -> (log_probs, state,
attention)`. Shapes: B batch, L output length, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

StepFunction = Callable[[Any, torch.Tensor], tuple[torch.Tensor, Any, torch.Tensor]]


class Hypotheses(NamedTuple):
    tokens: list[list[int]]  # per sentence, without BOS or EOS
    scores: torch.Tensor  # (B,) sum of the chosen tokens' log-probabilities, EOS included
    attention: torch.Tensor | None  # (B, L, S) weights behind each output token, if kept


def max_output_lengths(src_lengths: torch.Tensor, ratio: float, offset: int) -> torch.Tensor:
    """(B,) longest output allowed for each source: ratio x source length + offset."""
    return (src_lengths.float() * ratio).long() + offset


def greedy_search(
    step: StepFunction,
    state: Any,
    max_lengths: torch.Tensor,
    bos_id: int,
    eos_id: int,
    keep_attention: bool = False,
) -> Hypotheses:
    """Decode every sentence until EOS; at its maximum length (B,), EOS included, EOS is forced.

    Finished sentences leave the batch (`state.reorder(rows, rows)`), so every step computes
    only open sentences: on Multi30k test batches a third of the rows would otherwise be
    finished ones.
    """
    batch, device = max_lengths.shape[0], max_lengths.device
    longest = int(max_lengths.max())
    outputs = torch.full((batch, longest), eos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    attention = None
    sentence = torch.arange(batch, device=device)  # (B',) original row of each open sentence
    limits = max_lengths
    tokens = torch.full((batch,), bos_id, dtype=torch.long, device=device)
    for position in range(longest):
        log_probs, state, weights = step(state, tokens)  # (B', V), _, (B', S)
        if keep_attention:
            if attention is None:
                attention = weights.new_zeros(batch, longest, weights.shape[-1])
            attention[sentence, position] = weights
        best_scores, tokens = log_probs.max(dim=-1)  # (B',), (B',)
        last = position + 1 >= limits  # (B',) only EOS may come now
        best_scores = torch.where(last, log_probs[:, eos_id], best_scores)
        tokens = tokens.masked_fill(last, eos_id)
        scores[sentence] += best_scores
        outputs[sentence, position] = tokens
        open_rows = (tokens != eos_id).nonzero().squeeze(1)  # (B'',)
        if open_rows.numel() < tokens.numel():  # finished sentences leave the batch
            if open_rows.numel() == 0:
                break
            sentence, limits, tokens = sentence[open_rows], limits[open_rows], tokens[open_rows]
            state = state.reorder(open_rows, open_rows)
    return Hypotheses(_until_eos(outputs, eos_id), scores, attention)


def _until_eos(tokens: torch.Tensor, eos_id: int) -> list[list[int]]:
    """(B, L) ids -> per row, the ids before the first EOS."""
    rows = []
    for row in tokens.tolist():
        rows.append(row[: row.index(eos_id)] if eos_id in row else row)
    return rows
