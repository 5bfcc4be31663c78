import pytest
import torch

from seq2seq.model import decoder as decoder_module
from seq2seq.model.cells import CELL_TYPES
from seq2seq.model.loss import label_smoothed_loss
from seq2seq.model.recurrent import IndexedInputs, RecurrentLayer
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig
from tests import models
from tests.models import SMALL_SIZES as SMALL
from tests.models import small_model


def source_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return models.source_batch([7, 3, 5])


@pytest.mark.parametrize("cell_type", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(("layers", "residual"), [(1, False), (2, False), (2, True)])
def test_teacher_forcing_equals_step_by_step(cell_type: str, layers: int, residual: bool) -> None:
    model = small_model(
        cell_type=cell_type, encoder_layers=layers, decoder_layers=layers, residual=residual
    ).eval()
    src, lengths = source_batch()
    tgt_in = torch.randint(4, 60, (3, 6))
    with torch.no_grad():
        teacher_forced = torch.log_softmax(model(src, lengths, tgt_in), dim=-1)
        state = model.initial_state(model.encode(src, lengths))
        steps = []
        for position in range(tgt_in.shape[1]):
            log_probs, state, attention = model.step(state, tgt_in[:, position])
            steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, 1), teacher_forced)
    assert attention.shape == (3, 7)
    assert attention[1, 3:].abs().max().item() == 0.0


@pytest.mark.parametrize("cell_type", ["lstm", "gru", "rnn"])
def test_paired_products_give_the_logits_and_gradients_of_two(cell_type: str, monkeypatch) -> None:
    """With the memory as wide as the decoder state (M = 2 x 10 = H), a teacher-forced step
    multiplies c(i) and s(i-1) in one batched product; in train mode (dropout masks on
    s(i-1)) it gives the logits and gradients of the two products it replaces."""
    src, lengths = source_batch()
    tgt_in = torch.randint(4, 60, (3, 6))
    results = []
    for paired in (True, False):
        if not paired:
            monkeypatch.setattr(decoder_module, "_paired_weights", lambda weights: None)
        model = small_model(cell_type=cell_type, encoder_hidden_size=10)  # the same weights
        assert (decoder_module._paired_weights(model.decoder.step_weights()) is None) != paired
        torch.manual_seed(3)  # the same dropout masks
        logits = model(src, lengths, tgt_in)
        logits.logsumexp(-1).sum().backward()
        results.append((logits, {name: p.grad for name, p in model.named_parameters()}))
    (paired_logits, paired_grads), (logits, grads) = results
    torch.testing.assert_close(paired_logits, logits)
    for name, gradient in grads.items():
        torch.testing.assert_close(paired_grads[name], gradient, msg=name)


def test_residual_connections_change_nothing_for_one_layer_and_add_inputs_above() -> None:
    src, lengths = source_batch()
    tgt_in = torch.randint(4, 60, (3, 6))
    outputs = {}
    for layers in (1, 2):
        for residual in (False, True):
            model = small_model(encoder_layers=layers, decoder_layers=layers, residual=residual)
            with torch.no_grad():
                outputs[layers, residual] = model.eval()(src, lengths, tgt_in)
    torch.testing.assert_close(outputs[1, True], outputs[1, False], rtol=0, atol=0)
    assert not torch.allclose(outputs[2, True], outputs[2, False])


def test_residual_stacks_pass_gradcheck() -> None:
    """The gradient through the residual paths of a two-layer encoder and decoder (float64)."""
    model = small_model(encoder_layers=2, decoder_layers=2, residual=True).eval()
    src, lengths = models.source_batch([4, 2])
    tgt_in = torch.randint(4, 60, (2, 3))
    for name in ("encoder.layers.1.cell.weight_hh", "decoder.cells.1.weight_ih"):

        def loss(value: torch.Tensor, name: str = name) -> torch.Tensor:
            logits = torch.func.functional_call(model, {name: value}, (src, lengths, tgt_in))
            return logits.logsumexp(-1).sum()

        weight = model.get_parameter(name).detach().clone().requires_grad_()
        assert torch.autograd.gradcheck(loss, (weight,))


def test_step_with_gradients_does_not_normalize_in_place() -> None:
    """Search's step normalizes the logits in place; with autograd on it must not (an `out=`
    log-softmax has no backward)."""
    model = small_model().eval()
    src, lengths = source_batch()
    log_probs, _, _ = model.step(model.initial_state(model.encode(src, lengths)), src[:, 0])
    log_probs[:, 5].sum().backward()
    assert model.decoder.output.weight.grad.abs().sum() > 0
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones_like(log_probs[:, 0]))


def test_a_sentence_alone_and_inside_a_padded_batch_give_the_same_result() -> None:
    model = small_model(encoder_layers=2).eval()
    src, lengths = source_batch()
    tgt_in = torch.randint(4, 60, (3, 4))
    with torch.no_grad():
        batched = model(src, lengths, tgt_in)
        encoded = model.encode(src, lengths)
        for row, length in enumerate(lengths.tolist()):
            alone = model(
                src[row : row + 1, :length], lengths[row : row + 1], tgt_in[row : row + 1]
            )
            torch.testing.assert_close(batched[row], alone[0])
            memory = model.encode(src[row : row + 1, :length], lengths[row : row + 1]).memory
            torch.testing.assert_close(encoded.memory[row, :length], memory[0])


@pytest.mark.parametrize("layers", [1, 2])
def test_the_encoder_reads_each_distinct_word_once_outside_training(
    layers: int, monkeypatch
) -> None:
    """In eval mode the first layer gets each distinct source word's embedding and where it
    occurs (IndexedInputs), and the memory is the one the plain (B, S, E) inputs give: those
    of train mode with every dropout off."""
    model = small_model(
        encoder_layers=layers, embedding_dropout=0.0, dropout=0.0, recurrent_dropout=0.0
    )
    src, lengths = source_batch()
    given = []
    original = RecurrentLayer.forward

    def spy(layer: RecurrentLayer, inputs, *args, **kwargs):
        given.append(type(inputs))
        return original(layer, inputs, *args, **kwargs)

    monkeypatch.setattr(RecurrentLayer, "forward", spy)
    with torch.no_grad():
        plain = model.train().encode(src, lengths)
        assert given == [torch.Tensor] * layers
        given.clear()
        indexed = model.eval().encode(src, lengths)
        assert given == [IndexedInputs] + [torch.Tensor] * (layers - 1)
    for indexed_part, plain_part in zip(indexed, plain, strict=True):
        torch.testing.assert_close(indexed_part, plain_part)


def test_logits_at_positions_are_the_full_logits_rows_with_the_same_gradients() -> None:
    model = small_model()
    src, lengths = source_batch()
    tgt_in = torch.randint(4, 60, (3, 5))
    positions = torch.arange(5) < torch.tensor([[5], [2], [4]])  # (B, T): padding left out
    torch.manual_seed(3)
    full = model(src, lengths, tgt_in)[positions]  # (N, V)
    (full.tanh().sum()).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(3)  # the same dropout masks
    packed = model(src, lengths, tgt_in, positions)
    (packed.tanh().sum()).backward()
    assert packed.shape == (11, 60)
    torch.testing.assert_close(packed, full)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], msg=name)


@pytest.mark.parametrize("multiple", [4, 8, 64])
def test_output_rows_padded_to_a_multiple_change_no_logit_loss_or_gradient(multiple: int) -> None:
    src, lengths = source_batch()
    tgt_in = torch.randint(4, 60, (3, 5))
    positions = torch.arange(5) < torch.tensor([[5], [2], [4]])  # (B, T): N = 11 positions
    target = torch.randint(4, 60, (11,))
    results = []
    for rows_multiple in (1, multiple):
        model = small_model()  # the same seed: the same weights, the same dropout masks
        logits = model(src, lengths, tgt_in, positions, rows_multiple)
        loss, _, _ = label_smoothed_loss(logits, target, 0.1)
        loss.backward()
        results.append((logits, loss, {n: p.grad for n, p in model.named_parameters()}))
    (plain, plain_loss, plain_grads), (padded, padded_loss, padded_grads) = results
    assert plain.shape == (11, 60) and padded.shape == (-(-11 // multiple) * multiple, 60)
    torch.testing.assert_close(padded[:11], plain)
    torch.testing.assert_close(padded_loss, plain_loss)
    for name, gradient in plain_grads.items():
        torch.testing.assert_close(padded_grads[name], gradient, msg=name)


def test_state_reorder_selects_and_repeats_rows() -> None:
    model = small_model(decoder_layers=2).eval()
    src, lengths = source_batch()
    tokens = torch.tensor([5, 6, 7])
    index = torch.tensor([2, 2, 0, 1])
    with torch.no_grad():
        state = model.initial_state(model.encode(src, lengths))
        direct, _, direct_attention = model.step(state, tokens)
        reordered, _, _ = model.step(state.reorder(index, index), tokens[index])
        beams = torch.arange(3).repeat_interleave(2)  # 2 hypotheses per sentence, memory shared
        expanded, expanded_state, attention = model.step(state.reorder(beams), tokens[beams])
    torch.testing.assert_close(reordered, direct[index])
    torch.testing.assert_close(expanded, direct[beams])
    torch.testing.assert_close(attention, direct_attention[beams])
    assert expanded_state.memory.shape[0] == 3 and expanded_state.hidden[0].shape[1] == 6


@pytest.mark.parametrize("cell_type", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(("layers", "residual"), [(1, False), (2, True)])
@pytest.mark.parametrize("with_search_weights", [True, False])
def test_context_projected_per_source_position_gives_the_per_row_steps(
    cell_type: str, layers: int, residual: bool, with_search_weights: bool
) -> None:
    """A state for several hypotheses a sentence projects each source position's memory once
    (its share of the first layer's gates and of the deep output); steps mixing those with
    the attention weights give the log-probabilities and attention of steps that project the
    context per row, through beam expansion and sentences leaving."""
    model = small_model(
        cell_type=cell_type, decoder_layers=layers, encoder_layers=layers, residual=residual
    ).eval()
    src, lengths = source_batch()
    beams = torch.arange(3).repeat_interleave(2)  # two hypotheses per sentence
    leave_rows, leave_sentences = torch.tensor([0, 1, 4, 5]), torch.tensor([0, 2])

    def three_steps(hypotheses: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        search_weights = model.search_weights() if with_search_weights else None
        encoded = model.encode(src, lengths)
        state = model.initial_state(encoded, search_weights, hypotheses=hypotheses)
        first, state, first_attention = model.step(state, torch.tensor([5, 6, 7]))
        state = state.reorder(beams)
        second, state, second_attention = model.step(state, torch.tensor([8, 9, 10, 11, 12, 13]))
        state = state.reorder(leave_rows, leave_sentences)  # the second sentence is done
        third, state, third_attention = model.step(state, torch.tensor([14, 15, 16, 17]))
        assert (state.context_projections is None) == (hypotheses == 1)
        return [(first, first_attention), (second, second_attention), (third, third_attention)]

    with torch.no_grad():
        per_row, projected = three_steps(1), three_steps(2)
    for (log_probs, attention), (expected, expected_attention) in zip(
        projected, per_row, strict=True
    ):
        torch.testing.assert_close(log_probs, expected)
        torch.testing.assert_close(attention, expected_attention)
    with torch.no_grad():
        encoded = model.encode(src, lengths)
        state = model.initial_state(encoded, model.search_weights(), hypotheses=2)
    gates = CELL_TYPES[cell_type].gates * SMALL["decoder_hidden_size"]
    assert state.context_projections.shape == (3, 7, gates + SMALL["embedding_size"])


def test_search_weights_give_the_step_of_the_current_parameters() -> None:
    """Search steps read a table of embedding projections built from the parameters when the
    search starts (`search_weights()`), passed in explicitly: the same log-probabilities as
    steps that compute from the parameters, in any grad mode; after an update (a fused optimizer
    leaves version counters alone) the old table is not consulted unless passed in."""
    model = small_model().eval()
    src, lengths = source_batch()
    tokens = torch.tensor([5, 6, 7, 5, 9, 8])
    beams = torch.arange(3).repeat_interleave(2)  # two hypotheses per sentence

    def two_steps(search_weights) -> torch.Tensor:
        state = model.initial_state(model.encode(src, lengths), search_weights)
        _, state, _ = model.step(state, tokens[:3])
        return model.step(state.reorder(beams), tokens).log_probs.detach()

    with torch.no_grad():
        table = model.search_weights()
        torch.testing.assert_close(two_steps(table), two_steps(None))
    torch.testing.assert_close(two_steps(table), two_steps(None))  # grad mode on: the same
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    model.train()
    model(src, lengths, tokens[:3].unsqueeze(1)).sum().backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        fresh = model.search_weights()
        torch.testing.assert_close(two_steps(fresh), two_steps(None))
        assert not torch.allclose(two_steps(table), two_steps(None))  # a stale table shows


def test_the_output_layers_aligned_rows_change_no_log_probability() -> None:
    """Search weights pad the output layer's 60 rows to 64 (zero weights, -inf biases: rows of
    logits aligned for the GEMM); a step's log-probabilities have a column per word alone and
    equal those of the unpadded rows, also over a vocabulary of 11 words (re-padded to 16) with
    a word one sentence may not use."""
    model = small_model().eval()
    src, lengths = source_batch()
    tokens = torch.tensor([5, 6, 7])
    words = torch.tensor([0, 1, 2, 3, 5, 6, 7, 9, 11, 20, 31])
    outside = torch.zeros(3, 11, dtype=torch.bool)
    outside[1, 4] = True
    with torch.no_grad():
        encoded = model.encode(src, lengths)
        aligned = model.search_weights()
        plain = aligned._replace(
            output_weight=aligned.output_weight[:60], output_bias=aligned.output_bias[:60]
        )
        assert aligned.output_weight.shape == (64, SMALL["embedding_size"])
        assert not aligned.output_weight[60:].any()
        assert torch.isneginf(aligned.output_bias[60:]).all()
        log_probs = model.step(model.initial_state(encoded, aligned), tokens).log_probs
        expected = model.step(model.initial_state(encoded, plain), tokens).log_probs
        assert log_probs.shape == (3, 60)
        torch.testing.assert_close(log_probs, expected)
        assert aligned.restricted(words).output_weight.shape[0] == 16
        state = model.initial_state(encoded, aligned, (words, outside))
        chosen = model.step(state, torch.tensor([4, 5, 6])).log_probs  # words 5, 6, 7
    assert chosen.shape == (3, 11)
    assert torch.isneginf(chosen[1, 4]) and torch.isfinite(chosen[0]).all()
    allowed = expected[:, words].masked_fill(outside, float("-inf"))
    torch.testing.assert_close(chosen, allowed.log_softmax(dim=-1))


def expected_parameters(
    src_vocab: int,
    tgt_vocab: int,
    embedding: int,
    encoder: int,
    encoder_layers: int,
    decoder: int,
    decoder_layers: int,
    attention: int,
    cell_type: str,
    layer_norm: bool,
    tie: bool,
    share: bool,
) -> int:
    gates = CELL_TYPES[cell_type].gates

    def cell(inputs: int, hidden: int, directions: int) -> int:
        weights = gates * hidden * (inputs + hidden + 1)
        norms = 2 * gates * hidden + (2 * hidden if cell_type == "lstm" else 0)
        return directions * (weights + (norms if layer_norm else 0))

    memory = 2 * encoder
    total = src_vocab * embedding + (0 if share else tgt_vocab * embedding)
    total += sum(cell(embedding if i == 0 else memory, encoder, 2) for i in range(encoder_layers))
    total += sum(
        cell(embedding + memory if i == 0 else decoder, decoder, 1) for i in range(decoder_layers)
    )
    total += memory * attention + decoder * attention + attention + attention  # U, W + b, v
    total += memory * decoder_layers * decoder + decoder_layers * decoder  # bridge
    total += (decoder + memory + embedding) * embedding + embedding  # deep output
    total += (0 if tie else embedding * tgt_vocab) + tgt_vocab  # vocabulary projection
    return total


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(cell_type="gru", layer_norm=False, tie_embeddings=False),
        dict(cell_type="rnn", encoder_layers=2, decoder_layers=3, share_embeddings=True),
    ],
)
def test_parameter_count_matches_the_formula(options: dict) -> None:
    vocab = 60 if options.get("share_embeddings") else 50
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=60, **SMALL, **options))
    expected = expected_parameters(
        vocab,
        60,
        16,
        12,
        options.get("encoder_layers", 1),
        20,
        options.get("decoder_layers", 1),
        10,
        options.get("cell_type", "lstm"),
        options.get("layer_norm", True),
        options.get("tie_embeddings", True),
        options.get("share_embeddings", False),
    )
    assert sum(p.numel() for p in model.parameters()) == expected


def test_reference_model_size() -> None:
    model = Seq2Seq(Seq2SeqConfig())  # emb 256, bi-LSTM 256, decoder 512, attention 256, tied
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameters(
        8000, 8000, 256, 256, 1, 512, 1, 256, "lstm", True, True, False
    )


def test_tied_and_shared_embeddings_are_one_tensor() -> None:
    model = Seq2Seq(Seq2SeqConfig(60, 60, tie_embeddings=True, share_embeddings=False, **SMALL))
    assert model.decoder.output.weight is model.decoder.embedding.weight
    assert model.encoder.embedding is not model.decoder.embedding
    shared = Seq2Seq(Seq2SeqConfig(60, 60, share_embeddings=True, **SMALL))
    assert shared.encoder.embedding is shared.decoder.embedding
    with pytest.raises(ValueError, match="share_embeddings needs one joint vocabulary"):
        Seq2Seq(Seq2SeqConfig(50, 60, share_embeddings=True))


def test_initialization() -> None:
    model = Seq2Seq(Seq2SeqConfig(50, 60, forget_bias=1.0, **SMALL))
    cell = model.encoder.layers[0].cell
    size = cell.hidden_size
    for direction in range(2):
        for gate in range(4):
            block = cell.weight_hh[direction, gate * size : (gate + 1) * size]
            torch.testing.assert_close(block @ block.t(), torch.eye(size), atol=1e-5, rtol=0)
    assert torch.equal(cell.bias[:, size : 2 * size], torch.ones(2, size))
    assert cell.bias[:, :size].abs().max() == 0 and cell.bias[:, 2 * size :].abs().max() == 0
    assert model.encoder.embedding.weight[0].abs().max() == 0


def test_learns_to_reverse_sequences() -> None:
    """A learning test: a small model overfits reversal of random sequences in a few seconds."""
    torch.manual_seed(0)
    vocab, length, batch = 12, 6, 64
    model = Seq2Seq(
        Seq2SeqConfig(
            vocab,
            vocab,
            embedding_size=32,
            encoder_hidden_size=32,
            decoder_hidden_size=64,
            attention_size=32,
            embedding_dropout=0.0,
            dropout=0.0,
            recurrent_dropout=0.0,
        )
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    src = torch.randint(4, vocab, (batch, length))
    lengths = torch.full((batch,), length)
    tgt_out = src.flip(1)
    tgt_in = torch.cat((torch.full((batch, 1), 2), tgt_out[:, :-1]), dim=1)
    for _ in range(150):
        optimizer.zero_grad()
        logits = model(src, lengths, tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tgt_out.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    with torch.no_grad():
        accuracy = (model(src, lengths, tgt_in).argmax(-1) == tgt_out).float().mean().item()
    assert accuracy == 1.0
