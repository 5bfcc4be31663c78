"""Greedy search: the most probable token at every step, for a whole batch at once.

It knows nothing of the model: it drives any `step(state, tokens) -> (log_probs, state,
attention)` (step_api.py). Shapes: B batch, L output length, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from seq2seq.decoding.step_api import (
    Hypothesis,
    Sentences,
    StepFunction,
    coverage_penalty,
    forbid_repeated_ngrams,
    length_penalty,
)

if TYPE_CHECKING:
    from seq2seq.decoding.search import SearchOptions

# (log_probs (B', V), position, original rows (B',)) -> the next token of each open row (B',)
Choose = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


class Hypotheses(NamedTuple):
    """Greedy search's result for a batch."""

    tokens: list[list[int]]  # per sentence, without BOS or EOS
    scores: torch.Tensor  # (B,) sum of the chosen tokens' log-probabilities, EOS included
    attention: torch.Tensor | None  # (B, L, S) weights behind each output token, if kept


def greedy_strategy(
    step: StepFunction,
    state: Any,
    sentences: Sentences,
    options: SearchOptions,
    bos_id: int,
    eos_id: int,
    keep_attention: bool = False,
    column_ids: torch.Tensor | None = None,
) -> list[list[Hypothesis]]:
    """The search strategy `greedy`: one hypothesis per sentence, scored like beam search's
    (log-probability over the options' length penalty, plus the coverage penalty). It draws
    nothing, so `column_ids` does not matter to it."""
    needs_attention = keep_attention or options.coverage_penalty > 0
    result = greedy_search(
        step, state, sentences, bos_id, eos_id, needs_attention, None, options.no_repeat_ngram
    )
    return scored(result, options, sentences.source_lengths, keep_attention)


def scored(
    result: Hypotheses, options: SearchOptions, source_lengths: torch.Tensor, keep_attention: bool
) -> list[list[Hypothesis]]:
    """Each row's tokens as a one-hypothesis list, scored with the options' length penalty and
    coverage penalty (which reads the result's attention); attention kept if asked for."""
    lengths = torch.tensor([len(tokens) + 1 for tokens in result.tokens])  # EOS included
    divisors = length_penalty(lengths, options.length_penalty, options.alpha).tolist()
    coverage = [0.0] * len(lengths)
    if options.coverage_penalty > 0:
        coverage = coverage_penalty(
            result.attention.sum(dim=1), source_lengths, options.coverage_penalty
        ).tolist()  # rows past a sentence's EOS hold zeros: the sum is its own attention
    hypotheses = []
    log_probs = result.scores.tolist()
    for row, (tokens, log_prob) in enumerate(zip(result.tokens, log_probs, strict=True)):
        attention = result.attention[row, : len(tokens) + 1] if keep_attention else None
        score = log_prob / divisors[row] + coverage[row]
        hypotheses.append([Hypothesis(tokens, score, log_prob, attention)])
    return hypotheses


def greedy_search(
    step: StepFunction,
    state: Any,
    sentences: Sentences,
    bos_id: int,
    eos_id: int,
    keep_attention: bool = False,
    choose: Choose | None = None,
    no_repeat_ngram: int = 0,
) -> Hypotheses:
    """Decode every sentence until EOS; at its maximum length, EOS included, EOS is forced,
    and before its minimum length it is not allowed, nor a token that repeats an n-gram of
    `no_repeat_ngram` tokens. The next token is the most probable one, or what `choose` picks
    (sampling); the score adds its log-probability either way.

    Finished sentences leave the batch (`state.reorder(rows, rows)`), so every step computes
    only open ones: on Multi30k test batches a third of the rows would otherwise be finished.
    """
    batch, device = sentences.max_lengths.shape[0], sentences.max_lengths.device
    longest, shortest = torch.stack((sentences.max_lengths, sentences.min_lengths)).amax(1).tolist()
    outputs = torch.full((batch, longest), eos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    attention = None
    sentence = torch.arange(batch, device=device)  # (B',) original row of each open sentence
    limits = sentences.max_lengths
    tokens = torch.full((batch,), bos_id, dtype=torch.long, device=device)
    for position in range(longest):
        log_probs, state, weights = step(state, tokens)  # (B', V), _, (B', S)
        if position < shortest:  # EOS not yet, for the sentences whose minimum is still ahead
            early = position < sentences.min_lengths[sentence]  # (B',)
            log_probs[:, eos_id].masked_fill_(early, float("-inf"))
        if no_repeat_ngram:
            forbid_repeated_ngrams(log_probs, outputs[sentence, :position], no_repeat_ngram)
        if keep_attention:
            if attention is None:
                attention = weights.new_zeros(batch, longest, weights.shape[-1])
            attention[sentence, position] = weights
        best_scores, tokens = _next_tokens(log_probs, position, sentence, choose)  # (B',) x 2
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


def _next_tokens(
    log_probs: torch.Tensor, position: int, sentence: torch.Tensor, choose: Choose | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B', V) -> the next tokens' log-probabilities and the tokens (B',): the most probable,
    or those `choose` picks."""
    if choose is None:
        return log_probs.max(dim=-1)
    tokens = choose(log_probs, position, sentence)
    return log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1), tokens


def _until_eos(tokens: torch.Tensor, eos_id: int) -> list[list[int]]:
    """(B, L) ids -> per row, the ids before the first EOS."""
    rows = []
    for row in tokens.tolist():
        rows.append(row[: row.index(eos_id)] if eos_id in row else row)
    return rows
