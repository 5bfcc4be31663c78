"""How to search (`SearchOptions`), the registry of search strategies, and `search` itself.

A strategy is a function `(step, state, sentences, options, bos_id, eos_id, keep_attention,
column_ids) -> hypotheses per sentence, best first` over the model's step API (step_api.py);
`sentences` says what it knows of each sentence: source length, output bounds, and a number from
its source ids alone for strategies that draw random numbers (sampling.py); `column_ids` (V,)
the target id of each column of the step's log-probabilities when the search runs over a
vocabulary's words (None: column j is id j), for strategies whose draws are keyed by token.
`SearchOptions.strategy` names its entry in `STRATEGIES`; a new strategy is one module with
such a function plus one entry there (and, if it needs options of its own, fields here).

Shapes: B batch, S source length.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from seq2seq.decoding.beam_search import beam_strategy
from seq2seq.decoding.greedy import greedy_strategy
from seq2seq.decoding.row_buckets import padded, padded_columns
from seq2seq.decoding.sampling import sample_strategy, source_keys
from seq2seq.decoding.step_api import (
    Hypothesis,
    LengthPenalty,
    SearchVocabulary,
    Sentences,
    StepFunction,
)
from seq2seq.errors import Seq2SeqError

Strategy = Callable[..., list[list[Hypothesis]]]
STRATEGIES: dict[str, Strategy] = {
    "beam": beam_strategy,
    "greedy": greedy_strategy,
    "sample": sample_strategy,
}
StrategyName = Literal[tuple(STRATEGIES)]  # the registry's names, for argument parsing


class Searchable(Protocol):
    """What search needs of a model: the words it scores, encode once, a start state, and the
    step API."""

    def output_words(self) -> torch.Tensor:
        """(V',) the sorted target ids its steps score: token id i is the i-th."""

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Any:
        """Encode the (B, S) sources once."""

    def initial_state(
        self,
        encoded: Any,
        search_weights: Any = None,
        vocabulary: SearchVocabulary | None = None,
        hypotheses: int = 1,
    ) -> Any:
        """The state before the first target token; with a `vocabulary` (of words among the
        output words), of a search over its words alone, whose token ids are positions in
        them; `hypotheses`: the rows each sentence will have (the model may prepare for
        them)."""

    step: StepFunction


@dataclass(frozen=True)
class SearchOptions:
    """How to search.

    Args:
        strategy: `beam` (a beam of 1 is greedy search), `greedy` or `sample`.
        beam_size: hypotheses kept per sentence in beam search.
        nbest: hypotheses returned per sentence (beam: at most beam_size; sample: samples).
        length_penalty: what scores divide the log-probability by: `gnmt` ((5 + |Y|) / 6)^alpha,
            `average` (|Y|) or `none`.
        alpha: exponent of the GNMT length penalty.
        coverage_penalty: beta of GNMT's coverage penalty, added to finished hypotheses' scores:
            beta x the sum over source tokens of log(min(attention received, 1)) (0: off).
        max_output_ratio: longest output as a multiple of the source length...
        max_output_offset: ...plus this many tokens (EOS included).
        min_length: tokens before EOS is allowed...
        min_output_ratio: ...and at least this multiple of the source length (0: off).
        no_repeat_ngram: no n-gram of this many tokens appears twice in an output (0: off).
        temperature: sampling: log-probabilities are divided by it (below 1 sharper, above 1
            flatter).
        top_k: sampling: only the k most probable tokens (0: all).
        top_p: sampling: only the most probable tokens that together hold this much of the
            probability (nucleus sampling; 1.0: all).
        seed: sampling: the same seed gives the same samples of a sentence, in any batch.
        row_buckets: pad the decoder's rows (as sentences finish) and the source length up to
            one of this many counts per doubling (8: at most an eighth more), so that a step's
            shapes recur across batches (shape-keyed caches: oneDNN's bf16 primitives, CUDA
            graphs); 0: off.
    """

    strategy: StrategyName = "beam"
    beam_size: int = 5
    nbest: int = 1
    length_penalty: LengthPenalty = "gnmt"
    alpha: float = 0.6
    coverage_penalty: float = 0.0
    max_output_ratio: float = 1.5
    max_output_offset: int = 10
    min_length: int = 0
    min_output_ratio: float = 0.0
    no_repeat_ngram: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    row_buckets: int = 0

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise Seq2SeqError(f"search options: {problem}")

    def _problem(self) -> str | None:
        if self.strategy not in STRATEGIES:
            return f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}"
        if self.beam_size < 1:
            return f"beam_size must be at least 1, not {self.beam_size}"
        most = {"beam": self.beam_size, "sample": max(self.nbest, 1)}.get(self.strategy, 1)
        if not 1 <= self.nbest <= most:
            return f"nbest must be between 1 and {most} ({self.strategy}), not {self.nbest}"
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            return f"temperature must be a number above 0, not {self.temperature}"
        if self.top_k < 0:
            return f"top_k must be 0 (all tokens) or more, not {self.top_k}"
        if not 0 < self.top_p <= 1:
            return f"top_p must be above 0 and at most 1, not {self.top_p}"
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            return f"alpha must be a number of at least 0, not {self.alpha}"
        if not (math.isfinite(self.coverage_penalty) and self.coverage_penalty >= 0):
            return f"coverage_penalty must be a number of at least 0, not {self.coverage_penalty}"
        if not (math.isfinite(self.max_output_ratio) and self.max_output_ratio >= 0):
            return f"max_output_ratio must be a number of at least 0, not {self.max_output_ratio}"
        if not 0 <= self.min_output_ratio <= self.max_output_ratio:
            return (
                f"min_output_ratio must be between 0 and max_output_ratio"
                f" ({self.max_output_ratio}), not {self.min_output_ratio}"
            )
        if self.max_output_offset < 1:
            return f"max_output_offset must leave room for EOS (>= 1), not {self.max_output_offset}"
        if self.min_length < 0:
            return f"min_length must not be negative, not {self.min_length}"
        if self.no_repeat_ngram < 0:
            return f"no_repeat_ngram must be 0 (off) or more, not {self.no_repeat_ngram}"
        if self.row_buckets < 0:
            return f"row_buckets must be 0 (off) or more, not {self.row_buckets}"
        return None


@torch.no_grad()
def search(
    model: Searchable,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    options: SearchOptions,
    bos_id: int,
    eos_id: int,
    search_weights: Any = None,
    keep_attention: bool = False,
    vocabulary: SearchVocabulary | None = None,
) -> list[list[Hypothesis]]:
    """The best hypotheses of every sentence in (B, S) source ids, best first (with attention
    weights, (output length + 1, S), when `keep_attention`). `search_weights`: the model's
    `search_weights()`, built by the caller once for many searches. `vocabulary`: the words
    each sentence's outputs may use (a shortlist, shortlist.py), less any the model does not
    score; the model's probabilities are normalized over a sentence's own."""
    if vocabulary is not None:
        vocabulary = vocabulary.within(model.output_words().to(vocabulary.words.device))
    hypotheses = options.beam_size if options.strategy == "beam" else 1  # rows a sentence
    buckets = options.row_buckets
    encoded = model.encode(padded_columns(src, buckets) if buckets else src, src_lengths)
    state = model.initial_state(encoded, search_weights, vocabulary, hypotheses)
    step = model.step
    if buckets:
        step, state = padded(step, state, src.shape, buckets, src.device)
    strategy = STRATEGIES[options.strategy]
    sentences = sentences_of(src, src_lengths, options)
    words = model.output_words() if vocabulary is None else vocabulary.words  # (V',)
    bos, eos = _positions(words, (bos_id, eos_id))
    if int(words[-1]) == words.numel() - 1:  # words 0..V'-1: token ids are target ids
        return strategy(step, state, sentences, options, bos, eos, keep_attention, None)
    found = strategy(step, state, sentences, options, bos, eos, keep_attention, words)
    ids = words.tolist()
    return [
        [dataclasses.replace(h, tokens=[ids[t] for t in h.tokens]) for h in nbest]
        for nbest in found
    ]


def _positions(vocabulary: torch.Tensor, ids: tuple[int, ...]) -> list[int]:
    """Where the target `ids` stand in the sorted `vocabulary` (V',); a ValueError if absent."""
    wanted = torch.tensor(ids, device=vocabulary.device)
    positions = torch.searchsorted(vocabulary, wanted).clamp_(max=vocabulary.numel() - 1)
    if not torch.equal(vocabulary[positions], wanted):
        raise ValueError(f"a search vocabulary must hold the ids {list(ids)} (BOS and EOS)")
    return positions.tolist()


def sentences_of(src: torch.Tensor, src_lengths: torch.Tensor, options: SearchOptions) -> Sentences:
    """What strategies know of each of the (B, S) sources: its length; its longest output,
    max_output_ratio x source length + max_output_offset (EOS included); its shortest, at least
    min_length and min_output_ratio x source length tokens before EOS, and always shorter than
    the longest; its key (sampling.py)."""
    lengths = src_lengths.to(src.device)
    longest = (lengths.float() * options.max_output_ratio).long() + options.max_output_offset
    shortest = (lengths.float() * options.min_output_ratio).ceil().long()
    shortest = torch.minimum(shortest.clamp(min=options.min_length), longest - 1)
    return Sentences(lengths, shortest, longest, source_keys(src, lengths))
