"""Output words: a model restricted to some target words (Seq2Seq.restrict_output) computes
exactly the full model's logits at those words, learns only through their output rows, and
searches as the full model would with every other word impossible."""

from __future__ import annotations

import pytest
import torch

from seq2seq.data.tokenizer import BOS_ID, EOS_ID
from seq2seq.decoding.search import search
from seq2seq.model.loss import label_smoothed_loss
from tests.models import EVERY_STRATEGY, renormalized, small_model, source_batch, tiny_model

SCORED = [0, 1, 2, 3, 7, 9, 12, 20, 25, 29]  # of a 30-word (tiny) target vocabulary


def scored_mask(vocab: int = 30, ids: list[int] = SCORED) -> torch.Tensor:
    words = torch.zeros(vocab, dtype=torch.bool)
    words[ids] = True
    return words


def test_the_logits_are_the_full_models_columns_of_the_scored_words() -> None:
    full, restricted = tiny_model(seed=3), tiny_model(seed=3)
    restricted.restrict_output(scored_mask())
    src, lengths = source_batch([5, 3], vocab=30)
    tgt_in = torch.randint(4, 30, (2, 4))
    with torch.no_grad():
        logits = restricted(src, lengths, tgt_in)
        expected = full(src, lengths, tgt_in)[..., SCORED]
    assert logits.shape == (2, 4, len(SCORED))
    torch.testing.assert_close(logits, expected)
    assert restricted.output_words().tolist() == SCORED


def test_only_the_scored_words_output_rows_learn_and_the_loss_is_over_them() -> None:
    """Untied, so that the output layer's rows are its own: the unscored rows get no gradient,
    and the loss is cross-entropy over the scored words' logits, read at the targets' columns."""
    model = small_model(tie_embeddings=False)
    model.restrict_output(scored_mask(60))
    src, lengths = source_batch([7, 4, 6], vocab=50)
    tgt_in = torch.randint(4, 60, (3, 5))
    target = torch.tensor(SCORED[4:] * 2 + [3, 1, 12])  # (15,) target ids, all scored
    logits = model(src, lengths, tgt_in).flatten(0, 1)  # (15, V')
    columns = model.target_columns(target)
    loss, _, _ = label_smoothed_loss(logits, columns, 0.1)
    expected = torch.nn.functional.cross_entropy(logits, columns, label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    unscored = ~scored_mask(60)
    assert not model.decoder.output.weight.grad[unscored].any()
    assert not model.decoder.output.bias.grad[unscored].any()
    assert model.decoder.output.bias.grad[~unscored].abs().min() > 0


def test_target_columns_count_an_unscored_word_as_unk() -> None:
    model = tiny_model()
    model.restrict_output(scored_mask())
    ids = torch.tensor([[3, 7, 29], [8, 1, 28]])
    assert model.output_positions(ids).tolist() == [[3, 4, 9], [-1, 1, -1]]
    assert model.target_columns(ids).tolist() == [[3, 4, 9], [1, 1, 1]]


@pytest.mark.parametrize("with_search_weights", [False, True], ids=["parameters", "tables"])
def test_a_step_reads_and_scores_positions_in_the_output_words(with_search_weights) -> None:
    full, restricted = tiny_model(seed=2), tiny_model(seed=2)
    restricted.restrict_output(scored_mask())
    src, lengths = source_batch([4, 6, 2], vocab=30)
    positions = torch.tensor([2, 4, 8])  # BOS, 7 and 25
    ids = torch.tensor(SCORED)[positions]
    with torch.no_grad():
        weights = restricted.search_weights() if with_search_weights else None
        state = restricted.initial_state(restricted.encode(src, lengths), weights)
        log_probs, _, attention = restricted.step(state, positions)
        state = full.initial_state(full.encode(src, lengths))
        logits, _, expected_attention = full.decoder.step(state, ids)
    torch.testing.assert_close(log_probs, logits[:, SCORED].log_softmax(dim=-1))
    torch.testing.assert_close(attention, expected_attention)


@pytest.mark.parametrize("options", EVERY_STRATEGY, ids=["greedy", "beam", "sample"])
def test_search_finds_what_the_full_model_finds_with_other_words_impossible(options) -> None:
    """Tokens come back as target ids, scores as log-probabilities over the scored words."""
    full, restricted = tiny_model(seed=5), tiny_model(seed=5)
    restricted.restrict_output(scored_mask())
    src, lengths = source_batch([6, 4, 5], vocab=30, seed=3)
    found = search(restricted, src, lengths, options, BOS_ID, EOS_ID, restricted.search_weights())
    expected = search(renormalized(full, SCORED), src, lengths, options, BOS_ID, EOS_ID)
    assert [[h.tokens for h in n] for n in found] == [[h.tokens for h in n] for n in expected]
    for mine, theirs in zip(found, expected, strict=True):
        assert [h.score for h in mine] == pytest.approx([h.score for h in theirs], abs=1e-5)
    assert {t for n in found for h in n for t in h.tokens} <= set(SCORED)


def test_a_mask_without_unk_or_of_another_size_is_refused() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="must include <unk>"):
        model.restrict_output(scored_mask(ids=[0, 2, 3, 7]))
    with pytest.raises(ValueError, match=r"\(30,\) bool mask"):
        model.restrict_output(scored_mask(31))
