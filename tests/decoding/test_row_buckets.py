"""Search rows padded to a ladder of counts: the ladder, the counts a step sees, and the same
hypotheses as a search without padding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from seq2seq.decoding.row_buckets import bucket
from seq2seq.decoding.search import SearchOptions, search
from seq2seq.decoding.step_api import SearchVocabulary
from seq2seq.model.ensemble import Ensemble
from tests.decoding.fakes import BOS, EOS
from tests.models import EVERY_STRATEGY, source_batch, tiny_model

LENGTHS = [6, 3, 5, 2, 7, 4, 3, 6, 1, 5, 4]  # 11 sentences: padded at the start and as they end


def test_the_ladder_has_per_doubling_counts_and_pads_at_most_that_share() -> None:
    assert [bucket(n, 4) for n in (1, 7, 8, 9, 10, 11, 12, 13, 16, 17, 20, 33, 100)] == [
        1, 7, 8, 10, 10, 12, 12, 14, 16, 20, 20, 40, 112
    ]  # fmt: skip
    for per_doubling in (1, 2, 8):
        counts = [bucket(n, per_doubling) for n in range(1, 1025)]
        assert all(n <= b < n * (1 + 1 / per_doubling) for n, b in enumerate(counts, start=1))
        assert all(bucket(b, per_doubling) == b for b in counts)
        # every count below 2 x per_doubling, then per_doubling counts a doubling to 1,024
        doublings = 10 - (2 * per_doubling).bit_length() + 1
        assert len(set(counts)) == 2 * per_doubling + per_doubling * doublings


def searched(model, options: SearchOptions, vocabulary: SearchVocabulary | None = None) -> list:
    src, lengths = source_batch(LENGTHS, vocab=30, seed=3)
    return search(model, src, lengths, options, BOS, EOS, None, True, vocabulary)


def assert_same(padded: list, plain: list) -> None:
    assert [[h.tokens for h in n] for n in padded] == [[h.tokens for h in n] for n in plain]
    for mine, theirs in zip(padded, plain, strict=True):
        assert [h.score for h in mine] == pytest.approx([h.score for h in theirs], abs=1e-5)
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a.attention, b.attention, atol=1e-5, rtol=0)


@pytest.mark.parametrize("options", [*EVERY_STRATEGY, SearchOptions(coverage_penalty=0.2)])
@pytest.mark.parametrize("per_doubling", [1, 2, 8])
def test_padded_rows_give_the_same_hypotheses(options: SearchOptions, per_doubling: int) -> None:
    model = tiny_model(seed=5)
    plain = searched(model, options)
    padded = searched(model, dataclasses.replace(options, row_buckets=per_doubling))
    assert_same(padded, plain)


@pytest.mark.parametrize("options", EVERY_STRATEGY)
def test_an_ensemble_over_a_shortlist_pads_alike(options: SearchOptions) -> None:
    model = Ensemble([tiny_model(seed=5), tiny_model(seed=6)])
    words = torch.tensor([1, BOS, EOS, *range(6, 30, 2)])  # BOS and EOS never outside
    outside = torch.rand(len(LENGTHS), words.numel(), generator=torch.Generator().manual_seed(0))
    vocabulary = SearchVocabulary(words, (outside < 0.3) & (words > EOS))
    plain = searched(model, options, vocabulary)
    assert_same(searched(model, dataclasses.replace(options, row_buckets=1), vocabulary), plain)


def step_shapes(options: SearchOptions) -> tuple[list[int], set[int]]:
    """The rows of every step a search of LENGTHS' sentences runs, and the source lengths its
    steps see."""
    model = tiny_model(seed=5)
    rows, columns = [], set()
    original = model.step

    def counting_step(state, tokens: torch.Tensor):
        rows.append(tokens.numel())
        columns.add(state.memory.shape[1])
        return original(state, tokens)

    model.step = counting_step
    searched(model, options)
    return rows, columns


@pytest.mark.parametrize("options", EVERY_STRATEGY[:2])
def test_a_step_sees_only_the_ladders_counts(options: SearchOptions) -> None:
    """One count per doubling: a step's rows are a power of two times the rows a sentence has,
    however many sentences remain (the first beam step has one row a sentence), and so is the
    source length."""
    rows_a_sentence = options.beam_size if options.strategy == "beam" else 1
    plain, plain_columns = step_shapes(options)
    padded, padded_columns = step_shapes(dataclasses.replace(options, row_buckets=1))
    assert plain[0] == 11 and padded[0] == 16
    assert plain_columns == {7} and padded_columns == {8}
    ladder = {2**k * rows_a_sentence for k in range(5)}
    assert set(padded[1:]) <= ladder and not set(plain[1:]) <= ladder
    assert len(padded) == len(plain)
