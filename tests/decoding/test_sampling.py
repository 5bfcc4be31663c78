"""Sampling: exact draws from the filtered distribution, reproducible for a seed in any batch."""

import math
import re
from collections import Counter

import pytest
import torch

from seq2seq.decoding.sampling import filtered, gumbel_noise, sample_strategy, source_keys
from seq2seq.decoding.search import SearchOptions, search
from seq2seq.errors import Seq2SeqError
from tests.decoding.fakes import BOS, EOS, A, B, C, bounds, by_prefix, fake_step, start
from tests.models import source_batch, tiny_model

FIRST_TOKEN = {(): {A: 0.6, B: 0.3, C: 0.1}}  # then EOS


def first_tokens(samples: int, **options: object) -> Counter:
    """How often each first token is drawn among `samples` samples of one sentence."""
    options = SearchOptions(strategy="sample", nbest=samples, **options)
    step = fake_step(by_prefix(FIRST_TOKEN))
    found = sample_strategy(step, start(), bounds([3]), options, BOS, EOS)
    return Counter(h.tokens[0] for h in found[0])


def test_samples_follow_the_models_distribution() -> None:
    drawn = first_tokens(3000)
    assert drawn[A] / 3000 == pytest.approx(0.6, abs=0.03)
    assert drawn[B] / 3000 == pytest.approx(0.3, abs=0.03)
    assert drawn[C] / 3000 == pytest.approx(0.1, abs=0.02)


def test_temperature_top_k_and_top_p_cut_the_distribution() -> None:
    assert set(first_tokens(300, top_k=2)) == {A, B}
    assert set(first_tokens(300, top_p=0.5)) == {A}  # A alone holds 0.6 >= 0.5
    assert set(first_tokens(300, top_p=0.85)) == {A, B}
    assert set(first_tokens(300, temperature=0.05)) == {A}
    flat = first_tokens(3000, temperature=100.0)  # nearly uniform over the three
    assert min(flat[A], flat[B], flat[C]) / 3000 > 0.28


def test_filtered_keeps_the_best_token_and_tempers_the_rest() -> None:
    log_probs = torch.tensor([[math.log(0.6), math.log(0.3), math.log(0.1)]])
    assert torch.isfinite(filtered(log_probs, 1.0, 0, 1e-9)).tolist() == [[True, False, False]]
    tempered = filtered(log_probs, 2.0, 0, 1.0)
    assert torch.allclose(tempered, log_probs.double() / 2.0)


def test_top_k_of_one_is_greedy_search() -> None:
    model = tiny_model()
    src, lengths = source_batch([6, 3, 5], vocab=30)
    greedy = search(model, src, lengths, SearchOptions(strategy="greedy"), BOS, EOS)
    sampled = search(model, src, lengths, SearchOptions(strategy="sample", top_k=1), BOS, EOS)
    assert sampled == greedy


def test_a_seed_gives_the_same_samples_alone_and_in_a_batch() -> None:
    model = tiny_model()
    src, lengths = source_batch([6, 3, 5], vocab=30)
    options = SearchOptions(strategy="sample", nbest=4, temperature=1.5, seed=7)
    in_batch = search(model, src, lengths, options, BOS, EOS)
    for row in range(3):
        alone = search(model, src[row : row + 1, : lengths[row]], lengths[row : row + 1], options,
                       BOS, EOS)  # fmt: skip
        assert [h.tokens for h in alone[0]] == [h.tokens for h in in_batch[row]]
    again = search(model, src, lengths, options, BOS, EOS)
    assert [[h.tokens for h in n] for n in again] == [[h.tokens for h in n] for n in in_batch]


def test_other_seeds_draw_other_samples() -> None:
    model = tiny_model()
    src, lengths = source_batch([6, 6], vocab=30)
    drawn = {
        seed: [h.tokens for h in search(model, src, lengths, SearchOptions(
            strategy="sample", nbest=4, temperature=2.0, seed=seed), BOS, EOS)[0]]
        for seed in (0, 1)
    }  # fmt: skip
    assert drawn[0] != drawn[1]


def test_source_keys_ignore_padding_and_differ_between_sentences() -> None:
    src, lengths = source_batch([5, 3, 5], vocab=30)
    keys = source_keys(src, lengths)
    assert keys[1] == source_keys(src[1:2, :3], lengths[1:2])[0]
    assert len(set(keys.tolist())) == 3


def test_gumbel_noise_is_a_function_of_key_position_and_token() -> None:
    keys, tokens = torch.tensor([5, 6]), torch.arange(1000)
    noise = gumbel_noise(keys, 3, tokens)
    assert torch.equal(noise, gumbel_noise(keys, 3, tokens))
    assert not torch.equal(noise, gumbel_noise(keys, 4, tokens))
    some = torch.tensor([7, 500, 999])  # a shortlist's columns: each token's own number
    assert torch.equal(gumbel_noise(keys, 3, some), noise[:, some])
    assert torch.isfinite(noise).all()
    assert noise.mean().item() == pytest.approx(0.5772, abs=0.1)  # Euler-Mascheroni: Gumbel's mean


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": 0.0}, "temperature must be a number above 0, not 0.0"),
        ({"top_k": -1}, "top_k must be 0 (all tokens) or more, not -1"),
        ({"top_p": 0.0}, "top_p must be above 0 and at most 1, not 0.0"),
        ({"top_p": 1.5}, "top_p must be above 0 and at most 1, not 1.5"),
    ],
)
def test_sampling_options_are_checked_when_made(options: dict, message: str) -> None:
    with pytest.raises(Seq2SeqError, match=re.escape(message)):
        SearchOptions(strategy="sample", **options)
