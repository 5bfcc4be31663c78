"""What every search strategy shares: the step API it drives, what it knows of each sentence,
and the hypotheses it returns.

A model offers `step(state, tokens) -> (log_probs (R, V), state, attention (R, S))` over a state
with `reorder(rows, sentences=None)` (R hypothesis rows; the sentences still searched when some
leave). Strategies know nothing else of the model. Shapes: B sentences, R rows, S source length,
V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

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


class SearchVocabulary(NamedTuple):
    """The target words a search may use (a shortlist's, shortlist.py): its token ids are
    positions in `words`, and each sentence chooses among its own of them, its probabilities
    normalized over those: the same translation alone or in any batch."""

    words: torch.Tensor  # (V',) sorted target ids, BOS and EOS among them
    outside: torch.Tensor  # (B, V') True where a sentence may not use the word

    def within(self, scored: torch.Tensor) -> SearchVocabulary:
        """These words less those a model does not score (`scored` (V'',) sorted ids)."""
        kept = torch.isin(self.words, scored)  # (V',)
        if bool(kept.all()):
            return self
        return SearchVocabulary(self.words[kept], self.outside[:, kept])


class Sentences(NamedTuple):
    """What a strategy knows of each of the B sentences it searches, (B,) each."""

    source_lengths: torch.Tensor  # source tokens: the attention columns that are not padding
    min_lengths: torch.Tensor  # output tokens before EOS is allowed (below max_lengths)
    max_lengths: torch.Tensor  # longest output, EOS included
    keys: torch.Tensor  # a number from the source ids alone, for strategies that draw

    def select(self, rows: torch.Tensor) -> Sentences:
        """The sentences (and repeats of them) at `rows` (B',)."""
        return Sentences(*(values[rows] for values in self))


def length_penalty(lengths: torch.Tensor, kind: LengthPenalty, alpha: float) -> torch.Tensor:
    """Divisor of a hypothesis's log-probability: GNMT's ((5 + |Y|) / 6)^alpha (Wu et al., 2016),
    the length itself ('average'), or 1. |Y| counts EOS."""
    lengths = lengths.float()
    if kind == "gnmt":
        return ((5.0 + lengths) / 6.0) ** alpha
    if kind == "average":
        return lengths
    return torch.ones_like(lengths)


def coverage_penalty(
    coverage: torch.Tensor, source_lengths: torch.Tensor, beta: float
) -> torch.Tensor:
    """GNMT's coverage penalty (Wu et al., 2016), added to a finished hypothesis's score: beta x
    the sum over source tokens of log(min(attention the token received, 1)), at most 0.

    coverage (..., S) attention summed over the output, source_lengths (...,) -> (...,). A
    token never attended to counts as log of the smallest positive float, not -inf."""
    positions = torch.arange(coverage.shape[-1], device=coverage.device)
    real = positions < source_lengths.unsqueeze(-1)  # (..., S)
    logs = coverage.float().clamp(min=torch.finfo(torch.float32).tiny, max=1.0).log()
    return beta * torch.where(real, logs, 0.0).sum(dim=-1)


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
