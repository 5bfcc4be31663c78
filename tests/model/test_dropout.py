import torch

from seq2seq.model.dropout import sequence_mask, variational_dropout, word_dropout


def test_variational_mask_is_shared_over_time_and_differs_across_sequences() -> None:
    torch.manual_seed(0)
    dropped = variational_dropout(torch.ones(4, 9, 50), rate=0.5, training=True)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # same at every step
    assert not torch.equal(dropped[0], dropped[1])
    assert set(dropped.unique().tolist()) == {0.0, 2.0}


def test_rate_and_scale() -> None:
    torch.manual_seed(0)
    mask = sequence_mask((1000, 100), 0.3, torch.ones(1), training=True)
    assert abs((mask == 0).float().mean().item() - 0.3) < 0.01
    assert abs(mask.mean().item() - 1.0) < 0.01


def test_nothing_is_dropped_in_eval_mode_or_at_rate_zero() -> None:
    inputs = torch.randn(2, 3, 4)
    assert variational_dropout(inputs, 0.5, training=False) is inputs
    assert variational_dropout(inputs, 0.0, training=True) is inputs
    tokens = torch.randint(0, 10, (2, 3))
    assert word_dropout(inputs, tokens, 10, 0.5, training=False) is inputs


def test_word_dropout_drops_every_occurrence_of_a_word_in_a_sentence() -> None:
    torch.manual_seed(0)
    tokens = torch.tensor([[5, 6, 5, 7, 5, 6] * 3] * 8)  # (B, T)
    dropped = word_dropout(torch.ones(8, 18, 4), tokens, vocab_size=10, rate=0.5, training=True)
    for row in range(8):
        for word in (5, 6, 7):
            values = dropped[row][tokens[row] == word]
            assert torch.equal(values, values[:1].expand_as(values))
    assert (dropped == 0).any() and (dropped == 2).any()
