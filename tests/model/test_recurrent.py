import pytest
import torch

from seq2seq.model.recurrent import IndexedInputs, RecurrentLayer, reverse_within_lengths

CELL_TYPES = ["lstm", "gru", "rnn"]


def test_reverse_within_lengths() -> None:
    index = reverse_within_lengths(torch.tensor([4, 2]), steps=4)
    assert index.tolist() == [[3, 2, 1, 0], [1, 0, 2, 3]]


def padded_batch(lengths: list[int], features: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    inputs = torch.randn(len(lengths), max(lengths), features, dtype=torch.double)
    for row, length in enumerate(lengths):
        inputs[row, length:] = 100.0  # garbage in the padding must not leak anywhere
    return inputs, torch.tensor(lengths)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fused_and_custom_paths_agree_with_gradients(bidirectional: bool) -> None:
    torch.manual_seed(0)
    custom = RecurrentLayer("lstm", 5, 6, bidirectional, layer_norm=False, fused=False).double()
    fused = RecurrentLayer("lstm", 5, 6, bidirectional, layer_norm=False, fused=True).double()
    fused.load_state_dict(custom.state_dict())
    inputs, lengths = padded_batch([7, 3, 5, 1])
    results = []
    for layer in (custom, fused):
        x = inputs.clone().requires_grad_()
        output = layer(x, lengths)
        loss = output.outputs.pow(2).sum() + output.hidden.sum() + output.cell.sin().sum()
        loss.backward()
        results.append((output, x.grad, [p.grad for p in layer.parameters()]))
    (custom_out, custom_dx, custom_dw), (fused_out, fused_dx, fused_dw) = results
    for a, b in zip(custom_out, fused_out, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(custom_dx, fused_dx)
    for a, b in zip(custom_dw, fused_dw, strict=True):
        torch.testing.assert_close(a, b)


def test_fused_is_chosen_only_when_equivalent() -> None:
    assert RecurrentLayer("lstm", 3, 3, layer_norm=False).fused
    assert not RecurrentLayer("lstm", 3, 3, layer_norm=True).fused
    assert not RecurrentLayer("lstm", 3, 3, layer_norm=False, recurrent_dropout=0.1).fused
    assert not RecurrentLayer("gru", 3, 3, layer_norm=False).fused
    with pytest.raises(ValueError, match="fused kernel needs an LSTM without layer norm"):
        RecurrentLayer("lstm", 3, 3, layer_norm=True, fused=True)


@pytest.mark.parametrize("cell_type", CELL_TYPES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_changes_nothing(cell_type: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    layer = RecurrentLayer(cell_type, 5, 6, bidirectional, layer_norm=True).double().eval()
    inputs, lengths = padded_batch([7, 3, 5])
    batched = layer(inputs, lengths)
    for row, length in enumerate(lengths.tolist()):
        alone = layer(inputs[row : row + 1, :length], lengths[row : row + 1])
        torch.testing.assert_close(batched.outputs[row, :length], alone.outputs[0])
        torch.testing.assert_close(batched.hidden[:, row], alone.hidden[:, 0])
        assert batched.outputs[row, length:].abs().max().item() == 0.0 if length < 7 else True


def test_bidirectional_final_states_are_each_directions_last_step() -> None:
    torch.manual_seed(0)
    layer = RecurrentLayer("lstm", 5, 6, bidirectional=True).double().eval()
    inputs, lengths = padded_batch([4, 2])
    output = layer(inputs, lengths)
    assert output.outputs.shape == (2, 4, 12)
    for row, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(output.hidden[0, row], output.outputs[row, length - 1, :6])
        torch.testing.assert_close(output.hidden[1, row], output.outputs[row, 0, 6:])


def test_recurrent_dropout_mask_is_one_per_sequence(monkeypatch) -> None:
    torch.manual_seed(0)
    layer = RecurrentLayer("lstm", 5, 64, bidirectional=True, recurrent_dropout=0.5).train()
    masks = []
    original_step = layer.cell.step

    def recording_step(input_gates, hidden, cell, recurrent_mask=None, recurrent_weight=None):
        masks.append(recurrent_mask)
        return original_step(input_gates, hidden, cell, recurrent_mask, recurrent_weight)

    monkeypatch.setattr(layer.cell, "step", recording_step)
    layer(torch.randn(4, 6, 5), torch.tensor([6, 6, 4, 2]))
    assert len(masks) == 6
    assert all(mask is masks[0] for mask in masks)  # the very same mask at every step
    mask = masks[0]  # (D, B, H)
    assert set(mask.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(mask[:, 0], mask[:, 1])  # but a different one per sequence
    assert not torch.equal(mask[0], mask[1])  # and per direction


def test_eval_mode_is_deterministic_and_drops_nothing() -> None:
    torch.manual_seed(0)
    layer = RecurrentLayer("lstm", 5, 8, recurrent_dropout=0.5)
    inputs, lengths = torch.randn(3, 6, 5), torch.tensor([6, 5, 2])
    layer.train()
    assert not torch.equal(layer(inputs, lengths).outputs, layer(inputs, lengths).outputs)
    layer.eval()
    torch.testing.assert_close(
        layer(inputs, lengths).outputs, layer(inputs, lengths).outputs, rtol=0, atol=0
    )


@pytest.mark.parametrize("cell_type", CELL_TYPES)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_the_scanned_loop_computes_what_the_python_loop_does(
    cell_type: str, bidirectional: bool, layer_norm: bool
) -> None:
    """`scan=True` (what export traces) is the same function as the step loop, padding and the
    held states of ended sequences included."""
    torch.manual_seed(0)
    layer = RecurrentLayer(cell_type, 5, 6, bidirectional, layer_norm).double().eval()
    inputs, lengths = padded_batch([7, 3, 5, 1])
    looped, scanned = layer(inputs, lengths), layer(inputs, lengths, scan=True)
    torch.testing.assert_close(scanned.outputs, looped.outputs)
    torch.testing.assert_close(scanned.hidden, looped.hidden)
    if cell_type == "lstm":
        torch.testing.assert_close(scanned.cell, looped.cell)
    else:
        assert scanned.cell is None and looped.cell is None


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_do_not_depend_on_the_thread_count(bidirectional: bool) -> None:
    """Training gives the same parameters with any number of threads (a node of two processes
    runs each with one, two nodes of one with two: tests/test_distributed.py). torch's
    layer_norm kernel sums its affine parameters' gradients in a thread-dependent order, so the
    cells must not hand it their gains (cells.scaled_layer_norm)."""
    threads = torch.get_num_threads()
    gradients = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            torch.manual_seed(0)
            layer = RecurrentLayer("lstm", 32, 32, bidirectional, layer_norm=True)
            inputs = torch.randn(40, 9, 32)
            lengths = torch.randint(1, 10, (40,)).index_fill_(0, torch.tensor([0]), 9)
            outputs = layer(inputs, lengths)
            (outputs.outputs.square().sum() + outputs.hidden.sum()).backward()
            gradients.append({name: p.grad for name, p in layer.named_parameters()})
    finally:
        torch.set_num_threads(threads)
    for name, gradient in gradients[0].items():
        assert torch.equal(gradient, gradients[1][name]), name


@pytest.mark.parametrize(
    ("cell_type", "path"),
    [(cell_type, path) for cell_type in CELL_TYPES for path in ("loop", "scan")]
    + [("lstm", "fused")],
)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_indexed_inputs_give_what_their_dense_inputs_give(
    cell_type: str, bidirectional: bool, path: str
) -> None:
    """Inputs given as distinct rows and an index (rows repeat, padding is a row of its own):
    the same outputs, states and gradients as the (B, T, I) tensor they stand for, on every
    path (`scan`: export's; `fused`: torch's LSTM kernel)."""
    torch.manual_seed(0)
    fused = path == "fused"
    layer = RecurrentLayer(cell_type, 5, 6, bidirectional, layer_norm=not fused, fused=fused)
    layer = layer.double()
    rows = torch.randn(4, 5, dtype=torch.double)
    index = torch.tensor([[1, 2, 1, 3, 2, 1, 2], [2, 3, 2, 0, 0, 0, 0], [3, 1, 1, 1, 2, 0, 0]])
    lengths = torch.tensor([7, 3, 5])
    results = []
    for make_inputs in (lambda r: r[index], lambda r: IndexedInputs(r, index)):
        weights = rows.clone().requires_grad_()
        output = layer(make_inputs(weights), lengths, scan=path == "scan")
        (output.outputs.square().sum() + output.hidden.sum()).backward()
        grads = [weights.grad, *(p.grad.clone() for p in layer.parameters() if p.grad is not None)]
        layer.zero_grad()
        results.append((output.outputs, output.hidden, output.cell, grads))
    (dense_out, dense_hidden, dense_cell, dense_grads) = results[0]
    (indexed_out, indexed_hidden, indexed_cell, indexed_grads) = results[1]
    torch.testing.assert_close(indexed_out, dense_out)
    torch.testing.assert_close(indexed_hidden, dense_hidden)
    torch.testing.assert_close(indexed_cell, dense_cell)
    assert len(indexed_grads) == len(dense_grads)
    for indexed_grad, dense_grad in zip(indexed_grads, dense_grads, strict=True):
        torch.testing.assert_close(indexed_grad, dense_grad)
