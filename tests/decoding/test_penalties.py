"""The coverage penalty and the minimum length ratio, in greedy search, beam search and sampling."""

import math

import pytest
import torch

from seq2seq.decoding.beam_search import beam_search
from seq2seq.decoding.search import STRATEGIES, SearchOptions, search
from seq2seq.decoding.step_api import coverage_penalty, length_penalty
from tests.decoding.fakes import BOS, EOS, A, B, bounds, by_position, by_prefix, fake_step, start
from tests.models import source_batch, tiny_model

# A (0.6) beats B (0.4); but after A the model keeps attending to source token 0 and never
# covers token 1, while B's outputs attend to both: A's coverage is (1.5, 0.5), B's (1, 1).
TABLE = {(): {A: 0.6, B: 0.4}}  # then EOS
ATTENTION = {(): [0.5, 0.5], (A,): [1.0, 0.0], (B,): [0.5, 0.5]}


def covering_step():
    return fake_step(by_prefix(TABLE), attention_of=lambda prefix: ATTENTION[prefix])


def test_coverage_penalty_sums_the_log_of_capped_coverage_over_real_source_tokens() -> None:
    coverage = torch.tensor([[1.5, 0.5, 0.0], [0.25, 2.0, 0.0]])
    found = coverage_penalty(coverage, torch.tensor([2, 2]), beta=0.4)
    torch.testing.assert_close(found, torch.tensor([0.4 * math.log(0.5), 0.4 * math.log(0.25)]))
    never = coverage_penalty(torch.zeros(1, 2), torch.tensor([2]), beta=1.0)
    assert torch.isfinite(never).all() and never.item() < -150  # log of the smallest float, twice


def test_coverage_penalty_zero_is_plain_beam_search() -> None:
    model = tiny_model(seed=3, vocab=20)
    src, lengths = source_batch([7, 3, 5, 1, 6, 2], vocab=20, seed=4)
    plain = search(model, src, lengths, SearchOptions(beam_size=4, nbest=3), BOS, EOS)
    options = SearchOptions(beam_size=4, nbest=3, coverage_penalty=0.0)
    assert search(model, src, lengths, options, BOS, EOS) == plain


def test_coverage_penalty_reranks_towards_the_hypothesis_that_covers_the_source() -> None:
    sentences = bounds([4], source_lengths=2)
    plain = beam_search(covering_step(), start(), sentences, BOS, EOS, 2, penalty="none")
    covered = beam_search(
        covering_step(), start(), sentences, BOS, EOS, 2, 2, "none", coverage_beta=1.0
    )
    assert plain[0][0].tokens == [A]
    assert [h.tokens for h in covered[0]] == [[B], [A]]
    assert covered[0][0].score == pytest.approx(math.log(0.4))  # covers both: no penalty
    assert covered[0][1].score == pytest.approx(math.log(0.6) + math.log(0.5))
    assert covered[0][1].log_prob == pytest.approx(math.log(0.6))  # the penalty is in the score


@pytest.mark.parametrize("strategy", ["greedy", "sample"])
def test_one_hypothesis_strategies_add_the_coverage_penalty_to_their_score(strategy) -> None:
    # top_k 1: sampling draws the greedy choice
    options = SearchOptions(strategy=strategy, length_penalty="none", coverage_penalty=1.0, top_k=1)
    [[found]] = STRATEGIES[strategy](covering_step(), start(), bounds([4], 0, 2), options, BOS, EOS)
    assert found.tokens == [A] and found.attention is None  # attention read, not kept
    assert found.score == pytest.approx(math.log(0.6) + math.log(0.5))


@torch.no_grad()
def test_scores_of_a_model_are_normalized_log_probability_plus_coverage_penalty() -> None:
    model = tiny_model(seed=3, vocab=20)
    src, lengths = source_batch([7, 3, 5, 6], vocab=20, seed=4)
    options = SearchOptions(beam_size=3, nbest=3, coverage_penalty=0.7)
    found = search(model, src, lengths, options, BOS, EOS, keep_attention=True)
    for hypotheses, length in zip(found, lengths, strict=True):
        assert [h.score for h in hypotheses] == sorted((h.score for h in hypotheses), reverse=True)
        for h in hypotheses:
            divisor = length_penalty(torch.tensor(len(h.tokens) + 1), "gnmt", options.alpha)
            penalty = coverage_penalty(h.attention.sum(0), length, 0.7)
            assert h.score == pytest.approx(float(h.log_prob / divisor + penalty), abs=1e-4)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_each_sentence_waits_for_its_own_minimum_length(strategy: str) -> None:
    eager = fake_step(by_position([[EOS] * 6, [EOS] * 6]))  # EOS first, then -5 for the rest
    options = SearchOptions(strategy=strategy, beam_size=2, top_k=1)
    found = STRATEGIES[strategy](eager, start(2), bounds([6, 6], [1, 3]), options, BOS, EOS)
    assert [len(hypotheses[0].tokens) for hypotheses in found] == [1, 3]


def test_min_output_ratio_lengthens_outputs_in_proportion_to_the_source() -> None:
    model = tiny_model(seed=3, vocab=20)
    src, lengths = source_batch([7, 3, 5, 6], vocab=20, seed=4)
    options = SearchOptions(beam_size=3, min_output_ratio=1.2)
    found = search(model, src, lengths, options, BOS, EOS)
    for hypotheses, length in zip(found, lengths, strict=True):
        assert len(hypotheses[0].tokens) >= math.ceil(1.2 * int(length))
