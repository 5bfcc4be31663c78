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
    assert word_dropout(tokens, 10, 0.5, training=False, unk_id=1) is tokens


def test_word_dropout_replaces_every_occurrence_of_a_word_in_a_sentence() -> None:
    torch.manual_seed(0)
    tokens = torch.tensor([[5, 6, 5, 7, 5, 6] * 3] * 8)  # (B, T)
    kept = word_dropout(tokens, vocab_size=10, rate=0.5, training=True, unk_id=1)
    for row in range(8):
        for word in (5, 6, 7):
            values = kept[row][tokens[row] == word]
            assert values.unique().numel() == 1  # all kept or all replaced
            assert values[0].item() in (word, 1)
    assert (kept == 1).any() and (kept != 1).any()
    assert not torch.equal(kept[0], kept[1]) or not torch.equal(kept[1], kept[2])  # per sentence


def test_layer_norm_with_word_dropout_keeps_initial_gradients_tame() -> None:
    """Regression: zeroed embeddings made LN of an all-zero cell state explode to 1e9."""
    from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig

    torch.manual_seed(0)
    model = Seq2Seq(
        Seq2SeqConfig(
            50,
            50,
            embedding_size=16,
            encoder_hidden_size=16,
            decoder_hidden_size=16,
            attention_size=16,
            embedding_dropout=0.5,
        )
    )
    src = torch.randint(4, 50, (32, 9))
    logits = model(src, torch.full((32,), 9), src)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), src.flatten()).backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    assert norm < 100
