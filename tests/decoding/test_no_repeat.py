"""No-repeat n-grams: no search emits an n-gram twice, even when the model prefers repeats."""

import pytest
import torch

from seq2seq.decoding.search import STRATEGIES, SearchOptions
from seq2seq.decoding.step_api import forbid_repeated_ngrams
from tests.decoding.fakes import BOS, EOS, A, B, C, bounds, fake_step, start

REPEATER = {A: -0.1, B: -1.0, C: -2.0, EOS: -6.0}  # A again and again, if allowed


def ngrams(tokens: list[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]


def test_forbid_repeated_ngrams_bans_the_tokens_that_complete_a_seen_ngram() -> None:
    history = torch.tensor([[A, B, A], [A, A, A]])
    log_probs = torch.zeros(2, 7)
    forbid_repeated_ngrams(log_probs, history, 2)  # row 0 ends in A, after which B came
    assert torch.isinf(log_probs[0]).nonzero().flatten().tolist() == [B]
    assert torch.isinf(log_probs[1]).nonzero().flatten().tolist() == [A]
    unigrams = torch.zeros(2, 7)
    forbid_repeated_ngrams(unigrams, history, 1)
    assert torch.isinf(unigrams[0]).nonzero().flatten().tolist() == [A, B]
    untouched = torch.zeros(2, 7)
    forbid_repeated_ngrams(untouched, history, 0)
    forbid_repeated_ngrams(untouched, history, 4)  # no 4-gram yet
    assert not torch.isinf(untouched).any()


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_no_search_repeats_an_ngram(strategy: str, size: int) -> None:
    options = SearchOptions(strategy=strategy, beam_size=3, nbest=1, no_repeat_ngram=size)
    step = fake_step(lambda sentence, prefix: REPEATER)
    found = STRATEGIES[strategy](step, start(2), bounds([9, 9]), options, BOS, EOS)
    for hypotheses in found:
        tokens = hypotheses[0].tokens
        assert len(tokens) >= size  # it still writes
        assert len(set(ngrams(tokens, size))) == len(ngrams(tokens, size)), tokens


def test_without_the_option_the_repeats_stay() -> None:
    step = fake_step(lambda sentence, prefix: REPEATER)
    options = SearchOptions(strategy="greedy")
    found = STRATEGIES["greedy"](step, start(1), bounds([5]), options, BOS, EOS)
    assert found[0][0].tokens == [A, A, A, A]
