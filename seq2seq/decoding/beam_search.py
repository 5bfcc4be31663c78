"""Batched beam search over the model's step API, built from small pure helpers.

The whole batch is searched at once: B sentences x K beams are flattened into B*K rows of the
decoder's recurrent state (its encoder side stays one row per sentence, shared by the beams).
Every step scores the K*V extensions of each sentence, keeps the 2K best (so
that K of them can continue even when some end in EOS), finalizes the EOS candidates that rank
among the K best, and continues with the K best non-EOS ones. A sentence is done when it has K
finished hypotheses and no open beam can still beat the worst of them (length normalization can
favour longer outputs, so this uses each beam's most optimistic normalized score); done
sentences leave the batch. Shapes: B sentences, K beam size, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from seq2seq.decoding.greedy import greedy_strategy
from seq2seq.decoding.step_api import (
    Hypothesis,
    LengthPenalty,
    StepFunction,
    forbid_repeated_ngrams,
    length_penalty,
)

if TYPE_CHECKING:
    from seq2seq.decoding.search import SearchOptions


def beam_strategy(
    step: StepFunction,
    state: Any,
    max_lengths: torch.Tensor,
    options: SearchOptions,
    bos_id: int,
    eos_id: int,
    keep_attention: bool = False,
    sentence_keys: torch.Tensor | None = None,
) -> list[list[Hypothesis]]:
    """The search strategy `beam`. A beam of one is greedy search, which the greedy module runs
    without the beam bookkeeping (the same hypotheses, tested). It draws nothing:
    `sentence_keys` is not read."""
    if options.beam_size == 1:
        return greedy_strategy(step, state, max_lengths, options, bos_id, eos_id, keep_attention)
    return beam_search(
        step,
        state,
        max_lengths,
        bos_id,
        eos_id,
        options.beam_size,
        options.nbest,
        options.length_penalty,
        options.alpha,
        options.min_length,
        keep_attention,
        options.no_repeat_ngram,
    )


def top_candidates(
    scores: torch.Tensor, log_probs: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The `count` best extensions of each sentence's beams, best first.

    scores (B, K) running log-probabilities, log_probs (B, K, V) of the next token ->
    candidate scores (B, count), origin beam (B, count), token (B, count). Each beam's own
    `count` best tokens are found first (no sentence's `count` best can include a token its
    beam ranks lower), so the sum with the running scores and the final top-k touch K x count
    values instead of K x V.
    """
    per_beam = min(count, log_probs.shape[-1])
    best, tokens = log_probs.topk(per_beam, dim=-1)  # (B, K, per_beam)
    total = (scores.unsqueeze(-1) + best).flatten(1)  # (B, K*per_beam)
    missing = count - total.shape[1]  # one beam (the first step) of a vocabulary under count
    if missing > 0:
        total = torch.cat((total, total.new_full((total.shape[0], missing), float("-inf"))), 1)
        tokens = torch.cat((tokens.flatten(1), tokens.new_zeros(tokens.shape[0], missing)), 1)
    values, flat = total.topk(count, dim=-1)  # (B, count)
    origin = torch.div(flat, per_beam, rounding_mode="floor").clamp_(max=scores.shape[1] - 1)
    return values, origin, tokens.flatten(1).gather(1, flat)


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
    kept: torch.Tensor  # (B', K) best K finished normalized scores, -inf while fewer
    attention: torch.Tensor | None  # (B', K, t, S) attention so far, when kept

    @classmethod
    def start(cls, max_lengths: torch.Tensor, beam_size: int) -> _Search:
        """Every sentence with K beams of which only the first may extend (they start equal)."""
        batch, device = max_lengths.shape[0], max_lengths.device
        scores = torch.full((batch, beam_size), float("-inf"), device=device)
        scores[:, 0] = 0.0
        return cls(
            torch.arange(batch, device=device),
            scores,
            torch.empty(batch, beam_size, 0, dtype=torch.long, device=device),
            max_lengths,
            torch.full((batch, beam_size), float("-inf"), device=device),
            None,
        )

    def forbid_repeats(self, log_probs: torch.Tensor, beams: int, size: int) -> None:
        """In place: -inf for tokens (log_probs (B'*K', V)) that would repeat an n-gram of
        `size` tokens of their beam's history (0: none)."""
        if size:
            forbid_repeated_ngrams(log_probs, self.history[:, :beams].flatten(0, 1), size)

    def keep_ended(
        self, values: torch.Tensor, is_eos: torch.Tensor, divisor: float
    ) -> torch.Tensor:
        """(B', K) which of the K best candidates (values, is_eos: (B', 2K)) end a hypothesis;
        their normalized scores join the K best kept so far."""
        beam_size = self.scores.shape[1]
        ended = is_eos[:, :beam_size] & torch.isfinite(values[:, :beam_size])  # (B', K)
        normalized = (values[:, :beam_size] / divisor).masked_fill(~ended, float("-inf"))
        self.kept = torch.cat((self.kept, normalized), 1).topk(beam_size, dim=-1).values
        return ended

    def extend(
        self,
        scores: torch.Tensor,
        beam_rows: torch.Tensor,
        tokens: torch.Tensor,
        step_attention: torch.Tensor | None,
    ) -> None:
        """The open beams continue: from beams `beam_rows` (B', K) with `tokens` (B', K),
        scoring `scores` (B', K); `step_attention` (B', K', S) when attention is kept."""
        self.scores = scores
        history = self.history.gather(1, beam_rows.unsqueeze(-1).expand_as(self.history))
        self.history = torch.cat((history, tokens.unsqueeze(-1)), dim=-1)
        if step_attention is not None:
            self.attention = _extend_attention(self.attention, step_attention, beam_rows)

    def select(self, rows: torch.Tensor) -> _Search:
        """The remaining sentences `rows` (B'',); done ones leave."""
        attention = None if self.attention is None else self.attention[rows]
        return _Search(
            self.sentence[rows],
            self.scores[rows],
            self.history[rows],
            self.max_lengths[rows],
            self.kept[rows],
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
    no_repeat_ngram: int = 0,
) -> list[list[Hypothesis]]:
    """The `nbest` best hypotheses of each sentence, best first. `state` holds one row per
    sentence and supports `reorder(rows, sentences=None)`; `max_lengths` (B,) is each sentence's
    longest output (EOS included), `min_length` the shortest before EOS, `no_repeat_ngram` the
    n-gram size no hypothesis repeats (0: off); `keep_attention` records each hypothesis's
    attention (for plots). The host reads the device once a step: whether hypotheses ended or
    sentences are done."""
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and the beam size {beam_size}, not {nbest}")
    search = _Search.start(max_lengths, beam_size)
    finished: list[list[Hypothesis]] = [[] for _ in range(max_lengths.shape[0])]
    tokens = torch.full_like(search.sentence, bos_id)  # (B,)
    position = 0
    while search.sentence.numel() > 0:
        log_probs, state, weights = step(state, tokens)  # (B'*K', V), _, (B'*K', S)
        beams = 1 if position == 0 else beam_size  # K': the K beams start identical
        search.forbid_repeats(log_probs, beams, no_repeat_ngram)
        values, origin, token = _candidates(search, log_probs, beams, position, eos_id, min_length)
        divisor = float(length_penalty(torch.tensor(position + 1), penalty, alpha))
        ended = search.keep_ended(values, token == eos_id, divisor)  # (B', K)
        keep = continuing(token == eos_id, beam_size)  # (B', K)
        step_attention = weights.view(-1, beams, weights.shape[-1]) if keep_attention else None
        position += 1
        open_scores = values.gather(1, keep)  # (B', K)
        done = _done(search, open_scores, position, penalty, alpha)  # (B',)
        any_ended, any_done = torch.stack((ended.any(), done.any())).tolist()  # the one sync
        if any_ended:
            _finalize(finished, search, values, origin, ended, divisor, step_attention)
        beam_rows = origin.gather(1, keep)  # (B', K)
        tokens = token.gather(1, keep)  # (B', K)
        search.extend(open_scores, beam_rows, tokens, step_attention)
        rows = _flat_rows(beam_rows, beams)  # (B'*K,)
        if any_done:  # done sentences leave the batch
            search, state, tokens = _leave(search, state, tokens, rows, done)
        else:
            state, tokens = state.reorder(rows), tokens.flatten()
    return [sorted(hypotheses, key=lambda h: -h.score)[:nbest] for hypotheses in finished]


def _leave(
    search: _Search, state: Any, tokens: torch.Tensor, rows: torch.Tensor, done: torch.Tensor
) -> tuple[_Search, Any, torch.Tensor]:
    """Search, decoder state and next tokens (B''*K,) of the sentences not `done` (B',), the
    state's hypothesis rows taken from `rows` (B'*K,)."""
    open_sentences = (~done).nonzero().squeeze(1)  # (B'',)
    beam_size = tokens.shape[1]
    state = state.reorder(rows.view(-1, beam_size)[open_sentences].flatten(), open_sentences)
    return search.select(open_sentences), state, tokens[open_sentences].flatten()


def _candidates(
    search: _Search,
    log_probs: torch.Tensor,
    beams: int,
    position: int,
    eos_id: int,
    min_length: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 2K best extensions (B', 2K) of the first `beams` (K') open beams by their step's
    log_probs (B'*K', V): values, origin beam, token. EOS is not allowed before `min_length`
    and is the only choice at a sentence's last position."""
    count = 2 * search.scores.shape[1]
    scores = search.scores[:, :beams]  # (B', K')
    log_probs = log_probs.view(*scores.shape, -1)  # (B', K', V)
    if position < min_length:
        log_probs[..., eos_id] = float("-inf")
    last = (position + 1 >= search.max_lengths).view(-1, 1)  # (B', 1) only EOS may come
    free = top_candidates(scores, log_probs, count)
    forced = _only_eos(scores, log_probs, eos_id, count)
    return tuple(torch.where(last, f, c) for f, c in zip(forced, free, strict=True))


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


def _flat_rows(beam_rows: torch.Tensor, rows_per_sentence: int) -> torch.Tensor:
    """(B'*K,) rows of the flattened state (`rows_per_sentence` K' a sentence) that the beams
    (B', K) continue from."""
    base = torch.arange(beam_rows.shape[0], device=beam_rows.device).unsqueeze(1)
    return (base * rows_per_sentence + beam_rows).flatten()


def _only_eos(
    scores: torch.Tensor, log_probs: torch.Tensor, eos_id: int, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The `count` candidates (B', count) at a sentence's last position: each of the K' beams
    (scores (B', K')) ends with EOS, the other candidates are impossible."""
    batch, beams = scores.shape
    impossible = scores.new_full((batch, count - beams), float("-inf"))
    values = torch.cat((scores + log_probs[..., eos_id], impossible), 1)
    origin = (torch.arange(count, device=scores.device) % beams).expand(batch, -1)
    return values, origin, torch.full_like(origin, eos_id)


def _finalize(
    finished: list[list[Hypothesis]],
    search: _Search,
    values: torch.Tensor,
    origin: torch.Tensor,
    ended: torch.Tensor,
    divisor: float,
    step_attention: torch.Tensor | None,
) -> None:
    """Record the `ended` (B', K) EOS candidates among the K best as finished hypotheses."""
    rows, ranks = ended.nonzero().unbind(1)  # (E,), (E,)
    beams = origin[rows, ranks]
    histories = search.history[rows, beams].tolist()
    log_probs = values[rows, ranks].tolist()
    sentences = search.sentence[rows].tolist()
    attentions: list[torch.Tensor | None] = [None] * len(sentences)
    if step_attention is not None:
        now = step_attention[rows, beams].unsqueeze(1)  # (E, 1, S): the attention behind EOS
        earlier = now[:, :0] if search.attention is None else search.attention[rows, beams]
        attentions = list(torch.cat((earlier, now), 1))  # E x (t + 1, S)
    for sentence, tokens, log_prob, attention in zip(
        sentences, histories, log_probs, attentions, strict=True
    ):
        finished[sentence].append(Hypothesis(tokens, log_prob / divisor, log_prob, attention))


def _done(
    search: _Search, open_scores: torch.Tensor, position: int, penalty: LengthPenalty, alpha: float
) -> torch.Tensor:
    """(B',) whether each sentence can stop: out of room, or K finished and no open beam
    (B', K) can beat the worst kept.

    Log-probabilities only fall as a beam grows, so its best possible normalized score is its
    current log-probability over the largest divisor it can still reach.
    """
    reachable = length_penalty(search.max_lengths, penalty, alpha)  # (B',)
    optimistic = open_scores.max(dim=-1).values / reachable  # (B',)
    worst_kept = search.kept[:, -1]  # -inf while fewer than K have finished
    out_of_room = position >= search.max_lengths
    return out_of_room | (torch.isfinite(worst_kept) & (optimistic <= worst_kept))
