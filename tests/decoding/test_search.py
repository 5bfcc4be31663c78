"""SearchOptions, the strategy registry and `search` over a model."""

import re

import pytest
import torch

from seq2seq.decoding import search as search_module
from seq2seq.decoding.search import STRATEGIES, SearchOptions, search
from seq2seq.decoding.step_api import Hypothesis
from seq2seq.errors import Seq2SeqError
from tests.decoding.fakes import BOS, EOS
from tests.models import source_batch, tiny_model


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "sampling"}, "strategy must be one of beam, greedy, sample, not 'sampling'"),
        ({"beam_size": 0}, "beam_size must be at least 1"),
        ({"beam_size": 2, "nbest": 3}, "nbest must be between 1 and 2 (beam), not 3"),
        ({"strategy": "greedy", "nbest": 2}, "nbest must be between 1 and 1 (greedy)"),
        ({"max_output_offset": 0}, "max_output_offset must leave room for EOS (>= 1), not 0"),
        ({"alpha": float("nan")}, "alpha must be a number of at least 0, not nan"),
        ({"max_output_ratio": -1.0}, "max_output_ratio must be a number of at least 0, not -1.0"),
        ({"min_length": -1}, "min_length must not be negative"),
        ({"row_buckets": -1}, "row_buckets must be 0 (off) or more, not -1"),
    ],
)
def test_options_are_checked_when_made(options: dict, message: str) -> None:
    with pytest.raises(Seq2SeqError, match=re.escape(f"search options: {message}")):
        SearchOptions(**options)


def test_a_registered_strategy_is_chosen_by_name(monkeypatch) -> None:
    """A new strategy is a function plus one registry entry; `search` dispatches to it with
    the model's step, the initial state and what it knows of each sentence."""
    seen = {}

    def shortest(step, state, sentences, options, bos_id, eos_id, keep_attention, column_ids):
        seen.update(limits=sentences.max_lengths.tolist(), step=step, keys=sentences.keys.shape)
        return [[Hypothesis([], 0.0, 0.0)] for _ in sentences.max_lengths]

    monkeypatch.setitem(STRATEGIES, "shortest", shortest)
    model = tiny_model()
    src, lengths = source_batch([4, 2], vocab=30)
    options = SearchOptions(strategy="shortest", max_output_ratio=2.0, max_output_offset=1)
    assert search(model, src, lengths, options, BOS, EOS) == [[Hypothesis([], 0.0, 0.0)]] * 2
    assert seen["limits"] == [9, 5] and seen["step"] == model.step and seen["keys"] == (2,)


@pytest.mark.parametrize("options", [SearchOptions(beam_size=1), SearchOptions(beam_size=3)])
def test_search_weights_change_the_speed_not_the_result(options: SearchOptions) -> None:
    model = tiny_model()
    src, lengths = source_batch([6, 3, 5], vocab=30)
    weights = model.search_weights()
    with_table = search(model, src, lengths, options, BOS, EOS, weights)
    without = search(model, src, lengths, options, BOS, EOS)
    assert [[h.tokens for h in n] for n in with_table] == [[h.tokens for h in n] for n in without]
    for a, b in zip(with_table, without, strict=True):
        assert a[0].score == pytest.approx(b[0].score, abs=1e-5)


def test_search_runs_without_autograd() -> None:
    model = tiny_model()
    src, lengths = source_batch([3], vocab=30)
    calls = []
    original = model.step

    def spying_step(state, tokens: torch.Tensor):
        calls.append(torch.is_grad_enabled())
        return original(state, tokens)

    model.step = spying_step
    search_module.search(model, src, lengths, SearchOptions(beam_size=2), BOS, EOS)
    assert calls and not any(calls)
