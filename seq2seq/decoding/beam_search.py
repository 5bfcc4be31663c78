"""Batched beam search over the model's step API, built from small pure helpers.

The whole batch is searched at once: B sentences x K beams are flattened into B*K rows of the
decoder's recurrent state (its encoder side stays one row per sentence, shared by the beams).
Every step scores the K*V extensions of each sentence, keeps the 2K best (so
that K of them can continue even when some end in EOS), finalizes the EOS candidates that rank
among the K best, and continues with the K best non-EOS ones. A sentence is done when it has as
many finished hypotheses as asked for (n-best) and no open beam can still beat the last of them
(length normalization can favour longer outputs, so this uses each beam's most optimistic
normalized score): the result is exact, and done sentences leave the batch. Shapes: B
sentences, K beam size, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from seq2seq.decoding.greedy import greedy_strategy
from seq2seq.decoding.step_api import (
    Hypothesis,
    LengthPenalty,
    Sentences,
    StepFunction,
    coverage_penalty,
    forbid_repeated_ngrams,
    length_penalty,
)

if TYPE_CHECKING:
    from seq2seq.decoding.search import SearchOptions


def beam_strategy(
    step: StepFunction,
    state: Any,
    sentences: Sentences,
    options: SearchOptions,
    bos_id: int,
    eos_id: int,
    keep_attention: bool = False,
    column_ids: torch.Tensor | None = None,
) -> list[list[Hypothesis]]:
    """The search strategy `beam`. A beam of one is greedy search, which the greedy module runs
    without the beam bookkeeping (the same hypotheses, tested). It draws nothing, so
    `column_ids` does not matter to it."""
    if options.beam_size == 1:
        return greedy_strategy(step, state, sentences, options, bos_id, eos_id, keep_attention)
    return beam_search(
        step,
        state,
        sentences,
        bos_id,
        eos_id,
        options.beam_size,
        options.nbest,
        options.length_penalty,
        options.alpha,
        keep_attention,
        options.no_repeat_ngram,
        options.coverage_penalty,
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
    """Open beams of the sentences still being searched (row b of every tensor = sentence b).
    Attention is recorded when kept (plots) and summed into coverage when `coverage_beta`."""

    sentence: torch.Tensor  # (B',) original index of each remaining sentence
    bounds: Sentences  # (B',) each: source and output lengths of each remaining sentence
    scores: torch.Tensor  # (B', K) running log-probabilities
    history: torch.Tensor  # (B', K, t) tokens so far
    kept: torch.Tensor  # (B', K) best K finished normalized scores, -inf while fewer
    shortest: int  # the longest minimum output length: EOS is free from there on
    keep_attention: bool
    coverage_beta: float
    attention: torch.Tensor | None = None  # (B', K, t, S) attention so far, when kept
    coverage: torch.Tensor | None = None  # (B', K, S) attention summed, with a coverage penalty

    @classmethod
    def start(
        cls, sentences: Sentences, beam_size: int, keep_attention: bool, coverage_beta: float
    ) -> _Search:
        """Every sentence with K beams of which only the first may extend (they start equal)."""
        batch, device = sentences.max_lengths.shape[0], sentences.max_lengths.device
        scores = torch.full((batch, beam_size), float("-inf"), device=device)
        scores[:, 0] = 0.0
        return cls(
            torch.arange(batch, device=device),
            sentences,
            scores,
            torch.empty(batch, beam_size, 0, dtype=torch.long, device=device),
            torch.full((batch, beam_size), float("-inf"), device=device),
            int(sentences.min_lengths.max()),
            keep_attention,
            coverage_beta,
        )

    def forbid_early_eos(
        self, log_probs: torch.Tensor, beams: int, position: int, eos_id: int
    ) -> None:
        """In place: -inf for EOS (log_probs (B'*K', V)) in sentences short of their minimum."""
        if position >= self.shortest:
            return
        early = position < self.bounds.min_lengths  # (B',)
        log_probs.view(early.shape[0], beams, -1)[..., eos_id].masked_fill_(
            early.unsqueeze(1), float("-inf")
        )

    def forbid_repeats(self, log_probs: torch.Tensor, beams: int, size: int) -> None:
        """In place: -inf for tokens (log_probs (B'*K', V)) that would repeat an n-gram of
        `size` tokens of their beam's history (0: none)."""
        if size:
            forbid_repeated_ngrams(log_probs, self.history[:, :beams].flatten(0, 1), size)

    def coverage_bonus(
        self, step_weights: torch.Tensor, origin: torch.Tensor
    ) -> torch.Tensor | None:
        """(B', K) the coverage penalty of the K best candidates (origin beams (B', 2K) of this
        step's attention (B', K', S)); None without a coverage penalty."""
        if not self.coverage_beta:
            return None
        coverage = self._covered(step_weights, origin[:, : self.scores.shape[1]])  # (B', K, S)
        lengths = self.bounds.source_lengths.unsqueeze(1)  # (B', 1)
        return coverage_penalty(coverage, lengths, self.coverage_beta)

    def _covered(self, step_weights: torch.Tensor, beam_rows: torch.Tensor) -> torch.Tensor:
        """(B', K, S) the attention beams `beam_rows` (B', K) have received, this step's
        (B', K', S) included."""
        coverage = _from_beams(step_weights, beam_rows)
        if self.coverage is not None:
            coverage = coverage + _from_beams(self.coverage, beam_rows)
        return coverage

    def keep_ended(
        self, values: torch.Tensor, is_eos: torch.Tensor, divisor: float, bonus: torch.Tensor | None
    ) -> torch.Tensor:
        """(B', K) which of the K best candidates (values, is_eos: (B', 2K)) end a hypothesis;
        their scores (normalized, plus their coverage `bonus`) join the K best kept so far."""
        beam_size = self.scores.shape[1]
        ended = is_eos[:, :beam_size] & torch.isfinite(values[:, :beam_size])  # (B', K)
        normalized = values[:, :beam_size] / divisor
        if bonus is not None:
            normalized = normalized + bonus
        normalized = normalized.masked_fill(~ended, float("-inf"))
        self.kept = torch.cat((self.kept, normalized), 1).topk(beam_size, dim=-1).values
        return ended

    def extend(
        self,
        scores: torch.Tensor,
        beam_rows: torch.Tensor,
        tokens: torch.Tensor,
        step_weights: torch.Tensor,
    ) -> None:
        """The open beams continue: from beams `beam_rows` (B', K) with `tokens` (B', K),
        scoring `scores` (B', K); `step_weights` (B', K', S) this step's attention, when kept
        or summed."""
        self.scores = scores
        history = self.history.gather(1, beam_rows.unsqueeze(-1).expand_as(self.history))
        self.history = torch.cat((history, tokens.unsqueeze(-1)), dim=-1)
        if self.keep_attention:
            self.attention = _extend_attention(self.attention, step_weights, beam_rows)
        if self.coverage_beta:
            self.coverage = self._covered(step_weights, beam_rows)

    def select(self, rows: torch.Tensor) -> _Search:
        """The remaining sentences `rows` (B'',); done ones leave."""
        return _Search(
            self.sentence[rows],
            self.bounds.select(rows),
            self.scores[rows],
            self.history[rows],
            self.kept[rows],
            self.shortest,
            self.keep_attention,
            self.coverage_beta,
            None if self.attention is None else self.attention[rows],
            None if self.coverage is None else self.coverage[rows],
        )


def beam_search(
    step: StepFunction,
    state: Any,
    sentences: Sentences,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    nbest: int = 1,
    penalty: LengthPenalty = "gnmt",
    alpha: float = 0.6,
    keep_attention: bool = False,
    no_repeat_ngram: int = 0,
    coverage_beta: float = 0.0,
) -> list[list[Hypothesis]]:
    """The `nbest` best hypotheses of each sentence, best first, within `sentences`' length
    bounds. `state`: one row per sentence, with `reorder(rows, sentences=None)`; n-grams of
    `no_repeat_ngram` tokens never repeat and `coverage_beta` weighs the coverage penalty (0:
    off); `keep_attention` records attention (plots). The host reads the device once a step."""
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and the beam size {beam_size}, not {nbest}")
    search = _Search.start(sentences, beam_size, keep_attention, coverage_beta)
    finished: list[list[Hypothesis]] = [[] for _ in range(sentences.max_lengths.shape[0])]
    tokens, position = torch.full_like(search.sentence, bos_id), 0  # (B,)
    while search.sentence.numel() > 0:
        log_probs, state, weights = step(state, tokens)  # (B'*K', V), _, (B'*K', S)
        beams = 1 if position == 0 else beam_size  # K': the K beams start identical
        search.forbid_early_eos(log_probs, beams, position, eos_id)
        search.forbid_repeats(log_probs, beams, no_repeat_ngram)
        values, origin, token = _candidates(search, log_probs, beams, position, eos_id)
        divisor = float(length_penalty(torch.tensor(position + 1), penalty, alpha))
        step_weights = weights.view(-1, beams, weights.shape[-1])  # (B', K', S)
        bonus = search.coverage_bonus(step_weights, origin)  # (B', K) or None
        ended = search.keep_ended(values, token == eos_id, divisor, bonus)  # (B', K)
        keep = continuing(token == eos_id, beam_size)  # (B', K)
        position += 1
        open_scores = values.gather(1, keep)  # (B', K)
        done = _done(search, open_scores, position, (penalty, alpha), nbest)  # (B',)
        any_ended, any_done = torch.stack((ended.any(), done.any())).tolist()  # the one sync
        if any_ended:
            _finalize(finished, search, (values, origin, ended, bonus), divisor, step_weights)
        beam_rows = origin.gather(1, keep)  # (B', K)
        tokens = token.gather(1, keep)  # (B', K)
        search.extend(open_scores, beam_rows, tokens, step_weights)
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
    search: _Search, log_probs: torch.Tensor, beams: int, position: int, eos_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 2K best extensions (B', 2K) of the first `beams` (K') open beams by their step's
    log_probs (B'*K', V): values, origin beam, token. EOS is the only choice at a sentence's
    last position."""
    count = 2 * search.scores.shape[1]
    scores = search.scores[:, :beams]  # (B', K')
    log_probs = log_probs.view(*scores.shape, -1)  # (B', K', V)
    last = (position + 1 >= search.bounds.max_lengths).view(-1, 1)  # (B', 1) only EOS may come
    free = top_candidates(scores, log_probs, count)
    forced = _only_eos(scores, log_probs, eos_id, count)
    return tuple(torch.where(last, f, c) for f, c in zip(forced, free, strict=True))


def _extend_attention(
    history: torch.Tensor | None, step_attention: torch.Tensor, beam_rows: torch.Tensor
) -> torch.Tensor:
    """(B', K, t + 1, S): each surviving beam's attention so far, plus this step's."""
    current = _from_beams(step_attention, beam_rows)  # (B', K, S)
    if history is None:
        return current.unsqueeze(2)
    index = beam_rows.view(*beam_rows.shape, 1, 1).expand(-1, -1, *history.shape[2:])
    return torch.cat((history.gather(1, index), current.unsqueeze(2)), dim=2)


def _from_beams(per_beam: torch.Tensor, beam_rows: torch.Tensor) -> torch.Tensor:
    """(B', K', S) values of each beam -> (B', K, S) those of beams `beam_rows` (B', K)."""
    return per_beam.gather(1, beam_rows.unsqueeze(-1).expand(-1, -1, per_beam.shape[-1]))


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
    candidates: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None],
    divisor: float,
    step_weights: torch.Tensor,
) -> None:
    """Record the ended EOS candidates among the K best as finished hypotheses. `candidates`:
    values (B', 2K), origin beams (B', 2K), which ended (B', K), coverage bonus (B', K) or
    None; `step_weights` (B', K', S) this step's attention."""
    values, origin, ended, bonus = candidates
    rows, ranks = ended.nonzero().unbind(1)  # (E,), (E,)
    beams = origin[rows, ranks]
    histories = search.history[rows, beams].tolist()
    log_probs = values[rows, ranks].tolist()
    bonuses = [0.0] * len(log_probs) if bonus is None else bonus[rows, ranks].tolist()
    sentences = search.sentence[rows].tolist()
    attentions: list[torch.Tensor | None] = [None] * len(sentences)
    if search.keep_attention:
        now = step_weights[rows, beams].unsqueeze(1)  # (E, 1, S): the attention behind EOS
        earlier = now[:, :0] if search.attention is None else search.attention[rows, beams]
        attentions = list(torch.cat((earlier, now), 1))  # E x (t + 1, S)
    for sentence, tokens, log_prob, extra, attention in zip(
        sentences, histories, log_probs, bonuses, attentions, strict=True
    ):
        hypothesis = Hypothesis(tokens, log_prob / divisor + extra, log_prob, attention)
        finished[sentence].append(hypothesis)


def _done(
    search: _Search,
    open_scores: torch.Tensor,
    position: int,
    penalty: tuple[LengthPenalty, float],
    nbest: int,
) -> torch.Tensor:
    """(B',) whether each sentence can stop: out of room, or `nbest` finished and no open beam
    (B', K) can beat the nbest-th best of them (`penalty`: the length penalty and its alpha).

    Log-probabilities only fall as a beam grows, so its best possible normalized score is its
    current log-probability over the largest divisor it can still reach; a coverage penalty is
    at most 0, so leaving it out keeps the bound. Whatever finishes later scores at most that
    bound, so the `nbest` best found so far are final: the sentence needs no more steps, and
    asking for fewer hypotheses than the beam size stops it sooner with the same ones.
    """
    reachable = length_penalty(search.bounds.max_lengths, *penalty)  # (B',)
    optimistic = open_scores.max(dim=-1).values / reachable  # (B',)
    last_wanted = search.kept[:, nbest - 1]  # -inf while fewer than nbest have finished
    out_of_room = position >= search.bounds.max_lengths
    return out_of_room | (torch.isfinite(last_wanted) & (optimistic <= last_wanted))
