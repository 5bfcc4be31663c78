import math

import pytest
import torch

from seq2seq.decoding.beam_search import beam_search, beam_strategy, continuing, top_candidates
from seq2seq.decoding.greedy import greedy_search, greedy_strategy
from seq2seq.decoding.search import SearchOptions, sentences_of
from seq2seq.decoding.step_api import length_penalty
from tests.decoding.fakes import BOS, EOS, A, B, C, bounds, by_prefix, fake_step, start
from tests.models import source_batch, tiny_model

# Greedy takes A (0.6) and ends with p = 0.6 * 0.4 = 0.24; the best sequence is B EOS (0.4 * 0.9).
TABLE = {
    (): {A: 0.6, B: 0.4},
    (A,): {EOS: 0.4, C: 0.35, A: 0.25},
    (B,): {EOS: 0.9, C: 0.1},
    (A, C): {EOS: 1.0},
    (A, A): {EOS: 1.0},
    (B, C): {EOS: 1.0},
}


def table_step(table: dict[tuple[int, ...], dict[int, float]]):
    return fake_step(by_prefix(table))


def test_finds_the_best_sequence_greedy_misses() -> None:
    limits = bounds([5])
    greedy = greedy_search(table_step(TABLE), start(), limits, BOS, EOS)
    assert greedy.tokens == [[A]]
    best = beam_search(table_step(TABLE), start(), limits, BOS, EOS, beam_size=2, penalty="none")
    assert best[0][0].tokens == [B]
    assert best[0][0].log_prob == pytest.approx(math.log(0.4 * 0.9))


def test_nbest_is_exact_and_sorted() -> None:
    hypotheses = beam_search(
        table_step(TABLE),
        start(),
        bounds([5]),
        BOS,
        EOS,
        beam_size=4,
        nbest=4,
        penalty="none",
    )[0]
    expected = sorted(
        [
            ([B], 0.4 * 0.9),
            ([A], 0.6 * 0.4),
            ([A, C], 0.6 * 0.35),
            ([A, A], 0.6 * 0.25),
            ([B, C], 0.4 * 0.1),
        ],
        key=lambda pair: -pair[1],
    )[:4]
    assert [h.tokens for h in hypotheses] == [tokens for tokens, _ in expected]
    for hypothesis, (_, probability) in zip(hypotheses, expected, strict=True):
        assert hypothesis.log_prob == pytest.approx(math.log(probability))
        assert hypothesis.score == hypothesis.log_prob  # no length penalty


def test_a_sentence_stops_once_the_hypotheses_asked_for_cannot_be_beaten() -> None:
    """B EOS (0.63) finishes at the second step, when no open beam (A A, A C: 0.15 each) can
    still beat it: a 1-best search stops there; a 2-best one runs a step more, until A C EOS
    (0.15) finishes too; the best hypothesis is the same."""
    table = {
        (): {B: 0.7, A: 0.3},
        (B,): {EOS: 0.9, C: 0.1},
        (A,): {A: 0.5, C: 0.5},
        (A, A): {A: 1.0},
    }
    found, steps = {}, {}
    for nbest in (1, 2):
        positions = []

        def counting_step(state, tokens, positions=positions):
            positions.append(tokens.numel())
            return table_step(table)(state, tokens)

        found[nbest] = beam_search(
            counting_step, start(), bounds([6]), BOS, EOS, beam_size=2, nbest=nbest, penalty="none"
        )[0]
        steps[nbest] = len(positions)
    assert steps == {1: 2, 2: 3}
    assert found[1][0].tokens == found[2][0].tokens == [B]
    assert found[1][0].log_prob == pytest.approx(math.log(0.7 * 0.9))
    assert found[2][1].tokens == [A, C] and found[2][1].log_prob == pytest.approx(math.log(0.15))


def test_length_normalization_prefers_longer_when_asked() -> None:
    table = {(): {A: 0.5, EOS: 0.5}, (A,): {EOS: 0.9, A: 0.1}}
    short = beam_search(table_step(table), start(), bounds([5]), BOS, EOS, 2, penalty="none")
    long = beam_search(table_step(table), start(), bounds([5]), BOS, EOS, 2, penalty="average")
    assert short[0][0].tokens == []  # log 0.5 beats log 0.45
    assert long[0][0].tokens == [A]  # log(0.45) / 2 beats log(0.5) / 1


def test_maximum_and_minimum_length() -> None:
    table = {(): {A: 0.9, EOS: 0.1}, (A,): {A: 0.9, EOS: 0.1}, (A, A): {A: 0.9, EOS: 0.1}}
    capped = beam_search(table_step(table), start(), bounds([2]), BOS, EOS, 2, penalty="none")
    assert all(len(h.tokens) <= 1 for h in capped[0])  # EOS counts towards the maximum
    at_least = beam_search(
        table_step({(): {EOS: 0.9, A: 0.1}}),
        start(),
        bounds([4], min_lengths=1),
        BOS,
        EOS,
        2,
        penalty="none",
    )
    assert at_least[0][0].tokens == [A]


def test_helpers() -> None:
    assert length_penalty(torch.tensor([1, 7]), "gnmt", 1.0).tolist() == [1.0, 2.0]
    assert length_penalty(torch.tensor([4]), "average", 0.6).tolist() == [4.0]
    scores = torch.tensor([[0.0, -1.0]])
    log_probs = torch.log(torch.tensor([[[0.1, 0.9], [0.6, 0.4]]]))
    values, origin, token = top_candidates(scores, log_probs, 3)
    assert origin.tolist() == [[0, 1, 1]] and token.tolist() == [[1, 0, 1]]
    torch.testing.assert_close(
        values, torch.log(torch.tensor([[0.9, 0.6, 0.4]])) - torch.tensor([0.0, 1, 1])
    )
    assert continuing(torch.tensor([[True, False, False, True]]), 2).tolist() == [[1, 2]]


def test_top_candidates_of_one_beam_with_fewer_extensions_than_asked() -> None:
    """The first step searches one beam a sentence; a vocabulary smaller than 2K leaves
    impossible candidates, all from that beam."""
    log_probs = torch.log(torch.tensor([[[0.2, 0.5, 0.3]]]))  # (B=1, K'=1, V=3)
    values, origin, token = top_candidates(torch.zeros(1, 1), log_probs, 4)
    assert token[0, :3].tolist() == [1, 2, 0] and origin.tolist() == [[0, 0, 0, 0]]
    assert values[0, 3].item() == float("-inf")
    torch.testing.assert_close(values[0, :3], torch.log(torch.tensor([0.5, 0.3, 0.2])))


def test_top_candidates_equal_one_top_k_over_all_extensions() -> None:
    """Per-beam top-k first, then across beams: the same candidates as one top-k over K*V."""
    torch.manual_seed(5)
    scores = torch.randn(7, 5) * 3
    log_probs = torch.log_softmax(torch.randn(7, 5, 50), -1)
    values, origin, token = top_candidates(scores, log_probs, 10)
    expected, flat = (scores.unsqueeze(-1) + log_probs).flatten(1).topk(10, dim=-1)
    torch.testing.assert_close(values, expected)
    assert origin.tolist() == (flat // 50).tolist() and token.tolist() == (flat % 50).tolist()


def small_model():
    return tiny_model(seed=3, vocab=20)


def encoded_batch(model):
    src, lengths = source_batch([7, 3, 5, 1, 6, 2], vocab=20, seed=4)
    return src, lengths, sentences_of(src, lengths, SearchOptions(max_output_offset=3))


@torch.no_grad()
def test_beam_one_equals_greedy_and_larger_beams_score_at_least_as_well() -> None:
    model = small_model()
    src, lengths, limits = encoded_batch(model)
    state = model.initial_state(model.encode(src, lengths))
    greedy = greedy_search(model.step, state, limits, BOS, EOS)
    one = beam_search(model.step, state, limits, BOS, EOS, beam_size=1, penalty="none")
    assert [h[0].tokens for h in one] == greedy.tokens
    torch.testing.assert_close(torch.tensor([h[0].log_prob for h in one]), greedy.scores)
    five = beam_search(model.step, state, limits, BOS, EOS, beam_size=5, penalty="none")
    for hypotheses, greedy_score in zip(five, greedy.scores.tolist(), strict=True):
        assert hypotheses[0].log_prob >= greedy_score - 1e-5


@torch.no_grad()
def test_batched_equals_sentence_by_sentence() -> None:
    model = small_model()
    src, lengths, limits = encoded_batch(model)
    batched = beam_search(
        model.step,
        model.initial_state(model.encode(src, lengths)),
        limits,
        BOS,
        EOS,
        beam_size=4,
        nbest=2,
    )
    for row in range(len(lengths)):
        one = slice(row, row + 1)
        alone = beam_search(
            model.step,
            model.initial_state(model.encode(src[one, : lengths[row]], lengths[one])),
            limits.select(torch.tensor([row])),
            BOS,
            EOS,
            beam_size=4,
            nbest=2,
        )
        assert [h.tokens for h in alone[0]] == [h.tokens for h in batched[row]]
        for a, b in zip(alone[0], batched[row], strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-5)


@torch.no_grad()
def test_first_step_runs_once_per_sentence_and_done_sentences_leave() -> None:
    model = small_model()
    src, lengths, limits = encoded_batch(model)
    state = model.initial_state(model.encode(src, lengths))
    rows_per_step, memory_rows_per_step = [], []

    def counting_step(state, tokens: torch.Tensor):
        rows_per_step.append(tokens.numel())
        memory_rows_per_step.append(state.memory.shape[0])
        return model.step(state, tokens)

    beam_search(counting_step, state, limits, BOS, EOS, beam_size=3)
    assert rows_per_step[0] == 6 and memory_rows_per_step[0] == 6  # one row per sentence
    later = list(zip(rows_per_step[1:], memory_rows_per_step[1:], strict=True))
    assert all(rows == 3 * sentences for rows, sentences in later)  # 3 beams share a memory row
    assert rows_per_step[1] == 18 and rows_per_step[-1] < 18  # done sentences left
    assert rows_per_step[1:] == sorted(rows_per_step[1:], reverse=True)


def test_nbest_larger_than_beam_is_refused() -> None:
    with pytest.raises(ValueError, match="nbest must be between 1 and the beam size 2"):
        beam_search(table_step(TABLE), start(), bounds([3]), BOS, EOS, beam_size=2, nbest=3)


@torch.no_grad()
def test_kept_attention_matches_each_hypothesis() -> None:
    model = small_model()
    src, lengths, limits = encoded_batch(model)
    state = model.initial_state(model.encode(src, lengths))
    beams = beam_search(
        model.step, state, limits, BOS, EOS, beam_size=3, nbest=2, keep_attention=True
    )
    for row, hypotheses in enumerate(beams):
        for hypothesis in hypotheses:
            attention = hypothesis.attention
            assert attention.shape == (len(hypothesis.tokens) + 1, src.shape[1])
            torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[0]))
            assert attention[:, lengths[row] :].abs().sum().item() == 0.0
    greedy = greedy_search(model.step, state, limits, BOS, EOS, keep_attention=True)
    one = beam_search(model.step, state, limits, BOS, EOS, 1, penalty="none", keep_attention=True)
    for row, hypotheses in enumerate(one):
        steps = len(hypotheses[0].tokens) + 1
        torch.testing.assert_close(hypotheses[0].attention, greedy.attention[row, :steps])


def test_the_beam_strategy_with_a_beam_of_one_is_the_greedy_strategy() -> None:
    model = small_model()
    src, lengths, limits = encoded_batch(model)
    with torch.no_grad():
        state = model.initial_state(model.encode(src, lengths))
        options = SearchOptions(beam_size=1)
        by_beam = beam_strategy(model.step, state, limits, options, BOS, EOS)
        by_greedy = greedy_strategy(model.step, state, limits, options, BOS, EOS)
        wide = beam_search(model.step, state, limits, BOS, EOS, beam_size=1, nbest=1)
    assert by_beam == by_greedy
    for one, (greedy,) in zip(wide, by_greedy, strict=True):  # scored alike: normalized
        assert one[0].tokens == greedy.tokens
        assert one[0].score == pytest.approx(greedy.score, abs=1e-5)
