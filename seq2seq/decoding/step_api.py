"""What every search strategy shares: the step API it drives, and the hypotheses it returns.

A model offers `step(state, tokens) -> (log_probs (R, V), state, attention (R, S))` over a state
with `reorder(rows, sentences=None)` (R hypothesis rows; the sentences still searched when some
leave). Strategies know nothing else of the model. Shapes: B sentences, R rows, S source length,
V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

StepFunction = Callable[[Any, torch.Tensor], tuple[torch.Tensor, Any, torch.Tensor]]
LengthPenalty = Literal["gnmt", "average", "none"]


@dataclass(frozen=True)
class Hypothesis:
    """One translation as ids, with the scores the search ranked it by."""

    tokens: list[int]  # without BOS and EOS
    score: float  # log_prob divided by the length penalty: what hypotheses are ranked by
    log_prob: float  # sum of token log-probabilities, EOS included
    attention: torch.Tensor | None = None  # (len(tokens) + 1, S) weights behind each token


def length_penalty(lengths: torch.Tensor, kind: LengthPenalty, alpha: float) -> torch.Tensor:
    """Divisor of a hypothesis's log-probability: GNMT's ((5 + |Y|) / 6)^alpha (Wu et al., 2016),
    the length itself ('average'), or 1. |Y| counts EOS."""
    lengths = lengths.float()
    if kind == "gnmt":
        return ((5.0 + lengths) / 6.0) ** alpha
    if kind == "average":
        return lengths
    return torch.ones_like(lengths)


def max_output_lengths(src_lengths: torch.Tensor, ratio: float, offset: int) -> torch.Tensor:
    """(B,) longest output allowed for each source: ratio x source length + offset."""
    return (src_lengths.float() * ratio).long() + offset


def forbid_repeated_ngrams(log_probs: torch.Tensor, history: torch.Tensor, size: int) -> None:
    """Set to -inf, in place, the log-probabilities (R, V) of every token that would repeat an
    n-gram of `size` tokens already in its row's history (R, t); `size` 0: nothing."""
    if size < 1 or history.shape[1] < size:
        return
    windows = history.unfold(1, size, 1)  # (R, W, size): every n-gram so far
    recent = history[:, history.shape[1] - size + 1 :]  # (R, size - 1): what the next extends
    repeats = (windows[..., :-1] == recent.unsqueeze(1)).all(dim=-1)  # (R, W)
    rows, which = repeats.nonzero(as_tuple=True)
    log_probs[rows, windows[rows, which, -1]] = float("-inf")
