"""Batched beam search over the model's step API, built from small pure helpers.

The whole batch is searched at once: B sentences x K beams are flattened into B*K rows of the
decoder state. Every step scores the K*V extensions of each sentence, keeps the 2K best (so
that K of them can continue even when some end in EOS), finalizes the EOS candidates that rank
among the K best, and continues with the K best non-EOS ones. A sentence is done when it has K
finished hypotheses and no open beam can still beat the worst of them (length normalization can
favour longer outputs, so this uses each beam's most optimistic normalized score); done
sentences leave the batch. Shapes: B sentences, K beam size, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from seq2seq.decoding.greedy import StepFunction

LengthPenalty = Literal["gnmt", "average", "none"]


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # without BOS and EOS
    score: float  # normalized by the length penalty; what hypotheses are ranked by
    log_prob: float  # sum of token log-probabilities, EOS included
    attention: torch.Tensor | None = None  # (len(tokens) + 1, S) weights behind each token


def length_penalty(lengths: torch.Tensor, kind: LengthPenalty, alpha: float) -> torch.Tensor:
    """Divisor of a hypothesis's log-probability: GNMT's ((5 + |Y|) / 6)^alpha (Wu et al., 2016),
    the length itself ('average'), or 1."""
    lengths = lengths.float()
    if kind == "gnmt":
        return ((5.0 + lengths) / 6.0) ** alpha
    if kind == "average":
        return lengths
    return torch.ones_like(lengths)


def top_candidates(
    scores: torch.Tensor, log_probs: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The `count` best extensions of each sentence's beams, best first.

    scores (B, K) running log-probabilities, log_probs (B, K, V) of the next token ->
    candidate scores (B, count), origin beam (B, count), token (B, count). One fused top-k over
    K*V per sentence.
    """
    vocab = log_probs.shape[-1]
    total = (scores.unsqueeze(-1) + log_probs).flatten(1)  # (B, K*V)
    values, flat = total.topk(count, dim=-1)  # (B, count)
    return values, torch.div(flat, vocab, rounding_mode="floor"), flat % vocab


def continuing(is_eos: torch.Tensor, beam_size: int) -> torch.Tensor:
    """Positions (B, K) of the K best candidates that do not end in EOS (candidates are sorted)."""
    rank = torch.arange(is_eos.shape[-1], device=is_eos.device)
    order = rank + is_eos.long() * is_eos.shape[-1]  # EOS candidates sort last
    return order.topk(beam_size, dim=-1, largest=False).indices.sort(dim=-1).values


@dataclass
class _Search:
    """Open beams of the sentences still being searched (row b of every tensor = sentence b)."""

    sentence: torch.Tensor  # (B',) original index of each remaining sentence
    scores: torch.Tensor  # (B', K) running log-probabilities
    history: torch.Tensor  # (B', K, t) tokens so far
    max_lengths: torch.Tensor  # (B',)
    attention: torch.Tensor | None  # (B', K, t, S) attention so far, when kept

    def select(self, rows: torch.Tensor) -> _Search:
        """The sentences whose `rows` (B',) are True; done ones leave."""
        attention = None if self.attention is None else self.attention[rows]
        return _Search(
            self.sentence[rows],
            self.scores[rows],
            self.history[rows],
            self.max_lengths[rows],
            attention,
        )


def beam_search(
    step: StepFunction,
    state: Any,
    max_lengths: torch.Tensor,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    nbest: int = 1,
    penalty: LengthPenalty = "gnmt",
    alpha: float = 0.6,
    min_length: int = 0,
    keep_attention: bool = False,
) -> list[list[Hypothesis]]:
    """The `nbest` best hypotheses of each sentence, best first.

    `state` holds one row per sentence and must support `reorder(index)`; `max_lengths` (B,) is
    each sentence's longest output (EOS included), `min_length` the shortest before EOS;
    `keep_attention` records each hypothesis's attention weights (for plots).
    """
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and the beam size {beam_size}, not {nbest}")
    batch, device = max_lengths.shape[0], max_lengths.device
    state = state.reorder(torch.arange(batch, device=device).repeat_interleave(beam_size))
    scores = torch.full((batch, beam_size), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: only one may extend at first
    search = _Search(
        torch.arange(batch, device=device),
        scores,
        torch.empty(batch, beam_size, 0, dtype=torch.long, device=device),
        max_lengths,
        None,
    )
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    tokens = torch.full((batch * beam_size,), bos_id, dtype=torch.long, device=device)
    position = 0
    while search.sentence.numel() > 0:
        log_probs, state, weights = step(state, tokens)  # (B'*K, V), _, (B'*K, S)
        step_attention = weights.view(*search.scores.shape, -1) if keep_attention else None
        log_probs = _constrain(
            log_probs.view(*search.scores.shape, -1),
            position,
            search.max_lengths,
            min_length,
            eos_id,
        )
        values, origin, token = top_candidates(search.scores, log_probs, 2 * beam_size)
        _finalize(
            finished,
            search,
            values,
            origin,
            token,
            position,
            eos_id,
            beam_size,
            penalty,
            alpha,
            step_attention,
        )
        keep = continuing(token == eos_id, beam_size)  # (B', K)
        beam_rows = origin.gather(1, keep)  # (B', K)
        search.scores = values.gather(1, keep)
        history = search.history.gather(1, beam_rows.unsqueeze(-1).expand_as(search.history))
        tokens = token.gather(1, keep)  # (B', K)
        search.history = torch.cat((history, tokens.unsqueeze(-1)), dim=-1)
        if step_attention is not None:
            search.attention = _extend_attention(search.attention, step_attention, beam_rows)
        position += 1
        open_rows = ~_done(finished, search, position, beam_size, penalty, alpha)  # (B',)
        if not bool(open_rows.all()):  # done sentences leave the batch
            search = search.select(open_rows)
        state = state.reorder(_flat_rows(beam_rows, open_rows, beam_size))
        tokens = tokens[open_rows].flatten()
    return [sorted(hypotheses, key=lambda h: -h.score)[:nbest] for hypotheses in finished]


def _extend_attention(
    history: torch.Tensor | None, step_attention: torch.Tensor, beam_rows: torch.Tensor
) -> torch.Tensor:
    """(B', K, t + 1, S): each surviving beam's attention so far, plus this step's."""
    source = step_attention.shape[-1]
    current = step_attention.gather(1, beam_rows.unsqueeze(-1).expand(-1, -1, source))  # (B', K, S)
    if history is None:
        return current.unsqueeze(2)
    index = beam_rows.view(*beam_rows.shape, 1, 1).expand(-1, -1, *history.shape[2:])
    return torch.cat((history.gather(1, index), current.unsqueeze(2)), dim=2)


def _flat_rows(beam_rows: torch.Tensor, open_rows: torch.Tensor, beam_size: int) -> torch.Tensor:
    """Rows of the flattened (B'*K) state that the surviving beams continue from."""
    base = torch.arange(beam_rows.shape[0], device=beam_rows.device).unsqueeze(1) * beam_size
    return (base + beam_rows)[open_rows].flatten()


def _constrain(
    log_probs: torch.Tensor, position: int, max_lengths: torch.Tensor, min_length: int, eos_id: int
) -> torch.Tensor:
    """(B', K, V): no EOS before `min_length`; only EOS at each sentence's last position."""
    if position < min_length:
        log_probs = log_probs.index_fill(
            -1, torch.tensor([eos_id], device=log_probs.device), float("-inf")
        )
    last = (position + 1 >= max_lengths).view(-1, 1, 1)  # (B', 1, 1)
    if bool(last.any()):
        only_eos = torch.full_like(log_probs, float("-inf"))
        only_eos[..., eos_id] = 0.0
        log_probs = torch.where(last, log_probs + only_eos, log_probs)
    return log_probs


def _finalize(
    finished: list[list[Hypothesis]],
    search: _Search,
    values: torch.Tensor,
    origin: torch.Tensor,
    token: torch.Tensor,
    position: int,
    eos_id: int,
    beam_size: int,
    penalty: LengthPenalty,
    alpha: float,
    step_attention: torch.Tensor | None,
) -> None:
    """Record EOS candidates ranked among the K best as finished hypotheses."""
    ended = (token[:, :beam_size] == eos_id) & torch.isfinite(values[:, :beam_size])  # (B', K)
    if not bool(ended.any()):
        return
    divisor = float(length_penalty(torch.tensor(position + 1), penalty, alpha))
    for row, rank in ended.nonzero().tolist():
        log_prob = float(values[row, rank])
        beam = int(origin[row, rank])
        tokens = search.history[row, beam].tolist()
        attention = None
        if step_attention is not None:
            now = step_attention[row, beam].unsqueeze(0)  # (1, S): the attention behind EOS
            earlier = now[:0] if search.attention is None else search.attention[row, beam]
            attention = torch.cat((earlier, now))  # (t + 1, S)
        hypothesis = Hypothesis(tokens, log_prob / divisor, log_prob, attention)
        finished[int(search.sentence[row])].append(hypothesis)


def _done(
    finished: list[list[Hypothesis]],
    search: _Search,
    position: int,
    beam_size: int,
    penalty: LengthPenalty,
    alpha: float,
) -> torch.Tensor:
    """(B',) whether each sentence can stop: K finished and no open beam can beat the worst kept.

    Log-probabilities only fall as a beam grows, so its best possible normalized score is its
    current log-probability over the largest divisor it can still reach.
    """
    reachable = length_penalty(search.max_lengths, penalty, alpha)  # (B',)
    optimistic = (search.scores.max(dim=-1).values / reachable).tolist()
    done = []
    for row, sentence in enumerate(search.sentence.tolist()):
        kept = sorted((h.score for h in finished[sentence]), reverse=True)[:beam_size]
        out_of_room = position >= int(search.max_lengths[row])
        done.append(out_of_room or (len(kept) == beam_size and optimistic[row] <= kept[-1]))
    return torch.tensor(done, dtype=torch.bool, device=search.scores.device)
