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
    """Decode every sentence until EOS; at its maximum length (B,), EOS included, EOS is forced."""
    batch = max_lengths.shape[0]
    device = max_lengths.device
    tokens = torch.full((batch,), bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    outputs, attention = [], []
    for position in range(int(max_lengths.max())):
        log_probs, state, weights = step(state, tokens)  # (B, V), _, (B, S)
        if keep_attention:
            attention.append(weights)
        best_scores, tokens = log_probs.max(dim=-1)  # (B,), (B,)
        last = position + 1 >= max_lengths  # (B,) only EOS may come now
        best_scores = torch.where(last, log_probs[:, eos_id], best_scores)
        scores += best_scores.masked_fill(finished, 0.0)
        tokens = tokens.masked_fill(finished | last, eos_id)
        outputs.append(tokens)
        finished |= tokens == eos_id
        if bool(finished.all()):
            break
    kept = torch.stack(attention, 1) if keep_attention else None
    return Hypotheses(_until_eos(torch.stack(outputs, 1), eos_id), scores, kept)


def _until_eos(tokens: torch.Tensor, eos_id: int) -> list[list[int]]:
    """(B, L) ids -> per row, the ids before the first EOS."""
    rows = []
    for row in tokens.tolist():
        rows.append(row[: row.index(eos_id)] if eos_id in row else row)
    return rows
