import pytest
import torch

from seq2seq.decoding.greedy import greedy_search, greedy_strategy
from seq2seq.decoding.search import SearchOptions, sentences_of
from tests.decoding.fakes import BOS, EOS, bounds, by_position, fake_step, start
from tests.models import source_batch, tiny_model


def test_stops_at_eos_and_scores_chosen_tokens() -> None:
    step = fake_step(by_position([[4, 5, EOS, 4], [5, EOS, 4, 4]]))
    result = greedy_search(step, start(2), bounds([4, 4]), BOS, EOS)
    assert result.tokens == [[4, 5], [5]]
    torch.testing.assert_close(result.scores, torch.tensor([-0.3, -0.2]))


def test_finished_sentences_leave_the_batch() -> None:
    step = fake_step(by_position([[4, EOS, 4, 4, 4], [4, 4, 4, EOS, 4], [5, 5, EOS, 4, 4]]))
    rows_per_step = []

    def counting_step(state, tokens: torch.Tensor):
        rows_per_step.append(tokens.numel())
        return step(state, tokens)

    result = greedy_search(counting_step, start(3), bounds([5, 5, 5]), BOS, EOS)
    assert result.tokens == [[4], [4, 4, 4], [5, 5]]
    assert rows_per_step == [3, 3, 2, 1]  # sentence 0 leaves after step 2, sentence 2 after 3


def test_maximum_and_minimum_length_per_sentence() -> None:
    step = fake_step(by_position([[4, 4, 4, 4], [5, 5, 5, 5]]))
    result = greedy_search(step, start(2), bounds([2, 4]), BOS, EOS)
    assert result.tokens == [[4], [5, 5, 5]]  # EOS counts towards the maximum
    torch.testing.assert_close(result.scores, torch.tensor([-0.1 - 5.0, -0.3 - 5.0]))
    eager = fake_step(by_position([[EOS, EOS, EOS, EOS]]))  # EOS first, then -5 for the rest
    waited = greedy_search(eager, start(), bounds([4], min_lengths=2), BOS, EOS)
    assert len(waited.tokens[0]) == 2 and EOS not in waited.tokens[0]


@pytest.mark.parametrize(("penalty", "divisor"), [("none", 1.0), ("average", 3.0)])
def test_strategy_scores_like_beam_search(penalty: str, divisor: float) -> None:
    """The greedy strategy's score is the log-probability over the length penalty, as beam
    search ranks by; the raw sum stays in `log_prob`."""
    step = fake_step(by_position([[4, 5, EOS]]))
    options = SearchOptions(strategy="greedy", length_penalty=penalty)
    [[hypothesis]] = greedy_strategy(step, start(), bounds([5]), options, BOS, EOS)
    assert hypothesis.tokens == [4, 5]
    assert hypothesis.log_prob == pytest.approx(-0.3)
    assert hypothesis.score == pytest.approx(-0.3 / divisor)


def test_output_bounds_follow_the_source_lengths() -> None:
    src = torch.ones(3, 10, dtype=torch.long)
    options = SearchOptions(max_output_ratio=1.5, max_output_offset=5, min_output_ratio=0.5)
    sentences = sentences_of(src, torch.tensor([1, 10, 3]), options)
    assert sentences.max_lengths.tolist() == [6, 20, 9]
    assert sentences.min_lengths.tolist() == [1, 5, 2]  # ratio x length, rounded up
    assert sentences.source_lengths.tolist() == [1, 10, 3]
    options = SearchOptions(max_output_ratio=1.0, max_output_offset=1, min_length=4)
    shortest = sentences_of(src, torch.tensor([1, 10, 3]), options).min_lengths
    assert shortest.tolist() == [1, 4, 3]  # always below the longest, so EOS stays possible


def test_batched_equals_one_by_one_on_a_model() -> None:
    model = tiny_model()
    src, lengths = source_batch([6, 2, 4, 5], vocab=30)
    limits = sentences_of(src, lengths, SearchOptions(max_output_ratio=2.0, max_output_offset=3))
    with torch.no_grad():
        batched = greedy_search(
            model.step, model.initial_state(model.encode(src, lengths)), limits, BOS, EOS
        )
        for row in range(4):
            one = slice(row, row + 1)
            alone = greedy_search(
                model.step,
                model.initial_state(model.encode(src[one, : lengths[row]], lengths[one])),
                limits.select(torch.tensor([row])),
                BOS,
                EOS,
            )
            assert alone.tokens[0] == batched.tokens[row]
            torch.testing.assert_close(alone.scores[0], batched.scores[row])
