import pytest
import torch
from torch import nn
from torch.func import functional_call

from seq2seq.model import cells
from seq2seq.model.cells import CELL_TYPES, LSTMCell, RecurrentCell
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig


def make_cell(cell_type: str, layer_norm: bool, directions: int = 1) -> RecurrentCell:
    torch.manual_seed(0)
    cell = cells.make_cell(
        cell_type, input_size=5, hidden_size=4, num_directions=directions, layer_norm=layer_norm
    ).double()
    with torch.no_grad():  # move every parameter off its initial value, so gradcheck sees them all
        for parameter in cell.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return cell


class OneStep(nn.Module):
    """A cell's input projection and step as a forward(), for torch.func.functional_call."""

    def __init__(self, cell: RecurrentCell, mask: torch.Tensor) -> None:
        super().__init__()
        self.cell = cell
        self.mask = mask

    def forward(self, inputs, hidden, cell_state):
        projection = torch.bmm(inputs, self.cell.weight_ih.transpose(1, 2))  # (D, B, G*H)
        new_hidden, new_cell = self.cell.step(
            self.cell.input_gates(projection), hidden, cell_state, self.mask
        )
        return new_hidden if new_cell is None else new_hidden + 0.5 * new_cell


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("layer_norm", [True, False])
@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_gradcheck_step_inputs_state_and_parameters(
    cell_type: str, layer_norm: bool, directions: int
) -> None:
    mask = torch.tensor([0.0, 2.0]).double()[torch.randint(0, 2, (directions, 3, 4))]
    module = OneStep(make_cell(cell_type, layer_norm, directions), mask)
    names = [name for name, _ in module.named_parameters()]
    inputs = torch.randn(directions, 3, 5, dtype=torch.double, requires_grad=True)  # (D, B, I)
    hidden = torch.randn(directions, 3, 4, dtype=torch.double, requires_grad=True)
    cell_state = torch.randn(directions, 3, 4, dtype=torch.double, requires_grad=True)

    def one_step(inputs, hidden, cell_state, *parameters):
        replaced = dict(zip(names, parameters, strict=True))
        return functional_call(module, replaced, (inputs, hidden, cell_state))

    parameters = [p.detach().clone().requires_grad_() for p in module.parameters()]
    assert torch.autograd.gradcheck(one_step, (inputs, hidden, cell_state, *parameters))


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_matches_torch_cells_without_layer_norm(cell_type: str) -> None:
    cell = make_cell(cell_type, layer_norm=False)
    reference = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[cell_type](
        5, 4
    ).double()
    with torch.no_grad():
        reference.weight_ih.copy_(cell.weight_ih[0])
        reference.weight_hh.copy_(cell.weight_hh[0])
        reference.bias_ih.copy_(cell.bias[0])
        reference.bias_hh.zero_()
    x, h, c = (torch.randn(3, size, dtype=torch.double) for size in (5, 4, 4))
    projection = (x @ cell.weight_ih[0].t()).unsqueeze(0)
    new_hidden, new_cell = cell.step(cell.input_gates(projection), h.unsqueeze(0), c.unsqueeze(0))
    if cell_type == "lstm":
        expected_hidden, expected_cell = reference(x, (h, c))
        torch.testing.assert_close(new_cell[0], expected_cell)
    else:
        expected_hidden = reference(x, h)
    torch.testing.assert_close(new_hidden[0], expected_hidden)


@pytest.mark.parametrize("cell_type", CELL_TYPES)
@pytest.mark.parametrize("layer_norm", [True, False])
def test_layer_norm_makes_the_step_invariant_to_weight_scale(
    cell_type: str, layer_norm: bool
) -> None:
    """Ba et al. (2016), section 5: a layer-normalized RNN ignores the scale of its weights."""
    cell = make_cell(cell_type, layer_norm)
    x, h, c = (torch.randn(1, 3, size, dtype=torch.double) for size in (5, 4, 4))

    def step():
        projection = torch.bmm(x, cell.weight_ih.transpose(1, 2))
        return cell.step(cell.input_gates(projection), h, c)[0]

    with torch.no_grad():  # large projections, so that LayerNorm's epsilon plays no part
        cell.weight_ih.mul_(10.0)
        cell.weight_hh.mul_(10.0)
    before = step()
    with torch.no_grad():
        cell.weight_ih.mul_(7.0)
        cell.weight_hh.mul_(3.0)
    difference = (step() - before).abs().max().item()
    if layer_norm:
        assert difference < 1e-4
    else:
        assert difference > 1e-2


def test_shapes_and_project_input() -> None:
    cell = make_cell("lstm", layer_norm=True, directions=2)
    inputs = torch.randn(2, 3, 6, 5, dtype=torch.double)  # (D, B, T, I)
    gates = cell.project_input(inputs)
    assert gates.shape == (2, 3, 6, LSTMCell.gates * 4)
    step_by_step = cell.input_gates(torch.bmm(inputs[:, :, 2], cell.weight_ih.transpose(1, 2)))
    torch.testing.assert_close(gates[:, :, 2], step_by_step)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("directions", [1, 2])
def test_scaled_layer_norm_is_the_normalization_then_each_directions_gain_and_bias(
    directions: int, with_bias: bool
) -> None:
    values = torch.randn(directions, 3, 6, 8) * 5 + 2  # (D, B, T, F)
    gain = torch.randn(directions, 1, 1, 8)
    bias = torch.randn(directions, 1, 1, 8) if with_bias else None
    expected = nn.functional.layer_norm(values, (8,)) * gain + (0 if bias is None else bias)
    torch.testing.assert_close(cells.scaled_layer_norm(values, gain, bias), expected)
    normalized = cells.scaled_layer_norm(values, torch.ones_like(gain))
    assert normalized.mean(-1).abs().max() < 1e-5
    torch.testing.assert_close(normalized.var(-1, correction=0), torch.ones(directions, 3, 6))


def test_unknown_cell_type() -> None:
    with pytest.raises(ValueError, match="cell_type must be one of rnn, gru, lstm"):
        cells.make_cell("transformer", 3, 3)


class MinimalGatedCell(RecurrentCell):
    """A cell type the toolkit does not have: h(t) = (1 - f) * h(t-1) + f * tanh(candidate)."""

    gates = 2

    def update(self, input_gates, recurrent, hidden, cell):
        forget, candidate = (input_gates + recurrent).chunk(2, -1)
        return torch.lerp(hidden, torch.tanh(candidate), torch.sigmoid(forget)), None


def test_a_new_cell_type_is_one_class_and_one_registry_entry(monkeypatch) -> None:
    """Registered, the new cell runs everywhere a cell runs: encoder loop, decoder, search."""
    monkeypatch.setitem(CELL_TYPES, "mgu", MinimalGatedCell)
    torch.manual_seed(0)
    config = Seq2SeqConfig(20, 20, 8, 8, decoder_hidden_size=8, attention_size=8, cell_type="mgu")
    model = Seq2Seq(config).eval()
    assert isinstance(model.decoder.cells[0], MinimalGatedCell)
    src, lengths = torch.randint(4, 20, (2, 5)), torch.tensor([5, 3])
    tgt_in = torch.randint(4, 20, (2, 4))
    with torch.no_grad():
        forced = torch.log_softmax(model(src, lengths, tgt_in), -1)
        state = model.initial_state(model.encode(src, lengths), model.search_weights())
        steps = []
        for position in range(4):
            log_probs, state, _ = model.step(state, tgt_in[:, position])
            steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, 1), forced)
