"""Sampling: each output token drawn from the model's distribution (sharpened or flattened by a
temperature, cut to the top-k tokens and to the nucleus of top-p probability mass; Holtzman et
al., 2020), several samples per sentence, reproducible.

The random numbers come from a counter-based hash of (seed, the sentence's source ids, sample
number, position, token), not from a generator's stream: the same sentence draws the same
numbers alone or in any batch, on any device. A token is the argmax of the tempered, filtered
log-probabilities plus Gumbel noise, which is an exact draw from that distribution (the
Gumbel-max trick). Shapes: B sentences, N samples per sentence, R = B x N rows, S source
length, V vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from seq2seq.decoding.greedy import greedy_search, scored
from seq2seq.decoding.step_api import Hypothesis, Sentences, StepFunction

if TYPE_CHECKING:
    from seq2seq.decoding.search import SearchOptions

MASK = 0xFFFFFFFF  # the hash works on 32-bit values held in int64 tensors


def hash32(values: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing function, element-wise on int64 tensors of values in [0, 2^32)
    (multipliers below 2^31, so that no product leaves int64)."""
    values = ((values ^ (values >> 16)) * 0x7FEB352D) & MASK
    values = ((values ^ (values >> 15)) * 0x5BD1E995) & MASK
    return values ^ (values >> 16)


def source_keys(src: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
    """(B, S) source ids, (B,) lengths -> (B,) a number per sentence from its ids alone (padding
    and the batch around it left out)."""
    positions = torch.arange(src.shape[1], device=src.device)  # (S,)
    real = positions < src_lengths.to(src.device).unsqueeze(1)  # (B, S)
    per_token = hash32((src & MASK) ^ hash32(positions + 1))  # (B, S)
    total = (per_token * real).sum(dim=1) & MASK  # (B,)
    return hash32(total ^ hash32(src_lengths.to(src.device).long()))


def gumbel_noise(row_keys: torch.Tensor, position: int, tokens: torch.Tensor) -> torch.Tensor:
    """(R,) row keys, (V,) token ids -> (R, V) standard Gumbel noise for `position`, a function
    of its inputs: a token draws the same number whichever columns stand beside it."""
    step_keys = hash32(row_keys ^ hash32(torch.tensor(position + 1)))  # (R,)
    bits = hash32(hash32((step_keys.unsqueeze(1) + tokens * 0x3C6EF372) & MASK))  # (R, V)
    uniform = ((bits >> 8).double() + 0.5) / 2.0**24  # (R, V) in (0, 1), never 0 or 1
    return -torch.log(-torch.log(uniform))


def filtered(log_probs: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """(R, V) log-probabilities -> (R, V) tempered logits, -inf outside the top-k tokens
    (`top_k` 0: all) and outside the smallest set of tokens holding `top_p` of the tempered
    probability (1.0: all); the most probable token always stays."""
    logits = log_probs.double() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (R, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)  # (R, V)
        probabilities = ordered.softmax(dim=-1)
        before = probabilities.cumsum(dim=-1) - probabilities  # mass of the better tokens
        cut = (before >= top_p).scatter(-1, order, before >= top_p)  # back to token order
        logits = logits.masked_fill(cut, float("-inf"))
    return logits


def sample_strategy(
    step: StepFunction,
    state: Any,
    sentences: Sentences,
    options: SearchOptions,
    bos_id: int,
    eos_id: int,
    keep_attention: bool = False,
    column_ids: torch.Tensor | None = None,
) -> list[list[Hypothesis]]:
    """The search strategy `sample`: `options.nbest` samples per sentence, most probable first,
    scored like greedy search (log-probability under the model, untempered, over the length
    penalty, plus the coverage penalty). The draws of a sentence follow from its key and the
    tokens' ids (`column_ids`, when the columns are a vocabulary's words), so a sentence draws
    alike alone, in any batch and over any shortlist that holds its words."""
    batch, samples = sentences.keys.shape[0], options.nbest
    device = sentences.keys.device
    rows = torch.arange(batch, device=device).repeat_interleave(samples)  # (R,)
    sample = torch.arange(samples, device=device).repeat(batch)  # (R,)
    seed = hash32(torch.tensor(options.seed) & MASK)
    row_keys = hash32(sentences.keys[rows] ^ hash32(sample + 1) ^ seed)  # (R,)

    def choose(log_probs: torch.Tensor, position: int, open_rows: torch.Tensor) -> torch.Tensor:
        logits = filtered(log_probs, options.temperature, options.top_k, options.top_p)
        tokens = (
            torch.arange(log_probs.shape[-1], device=device) if column_ids is None else column_ids
        )
        noise = gumbel_noise(row_keys[open_rows], position, tokens)
        return (logits + noise).argmax(dim=-1)

    expanded = state.reorder(rows, rows)  # every sample its own sentence
    repeated = sentences.select(rows)
    needs_attention = keep_attention or options.coverage_penalty > 0
    result = greedy_search(
        step, expanded, repeated, bos_id, eos_id, needs_attention, choose, options.no_repeat_ngram
    )
    found = scored(result, options, repeated.source_lengths, keep_attention)  # by sentence
    per_sentence = [
        [hypotheses[0] for hypotheses in found[b * samples : (b + 1) * samples]]
        for b in range(batch)
    ]
    return [sorted(drawn, key=lambda h: -h.score) for drawn in per_sentence]
