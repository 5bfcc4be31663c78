"""One time step of an LSTM, GRU or tanh-RNN, with layer normalization switchable.

Shapes: D directions (1, or 2 run side by side), B batch, T time, I input size, H hidden size,
G gates (LSTM 4, GRU 3, RNN 1).

Layer normalization follows Ba, Kiros & Hinton (2016), "Layer Normalization", eq. 20-22 for
the LSTM: the input projection W x and the recurrent projection U h are normalized separately
(each with its own gain), their sum gets one bias, and the cell state is normalized before the
output tanh while the un-normalized cell is carried on:

    gates = LN(W x; g_x) + LN(U h; g_h) + b
    c_t   = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t   = sigmoid(o) * tanh(LN(c_t; g_c, b_c))

The input half of `gates` depends on no earlier step, so callers compute it for all time steps
at once (`input_gates`) and the loop runs only `step`.

Cell types are a registry: `RecurrentCell` holds the weights and the shared half of a step
(recurrent GEMM, layer norms); each subclass adds its gate count and pointwise update, and
`CELL_TYPES` maps the configuration's name to the class. A new cell type is one subclass plus
one entry there.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.model.autocast import cast_once


class RecurrentCell(nn.Module):
    """Weights of D independent cells (D = 2: the two directions of a bidirectional layer).

    Subclasses set `gates` (G) and implement `update`. Gate order along G*H is nn.LSTM's
    (i, f, g, o) and nn.GRU's (r, z, n), so that the fused torch LSTM kernel can run on these
    very parameters.
    """

    gates: ClassVar[int]
    has_cell_state: ClassVar[bool] = False  # carries c(t) beside h(t)
    forget_gate: ClassVar[int | None] = None  # index of the gate whose bias starts at 1
    fusable: ClassVar[bool] = False  # torch's fused LSTM kernel computes the same function

    def __init__(
        self, input_size: int, hidden_size: int, num_directions: int = 1, layer_norm: bool = True
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_directions = num_directions
        self.layer_norm = layer_norm
        gate_size = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(num_directions, gate_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(num_directions, gate_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(num_directions, gate_size))
        if layer_norm:
            self.input_norm_weight = nn.Parameter(torch.ones(num_directions, 1, gate_size))
            self.hidden_norm_weight = nn.Parameter(torch.ones(num_directions, 1, gate_size))
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.xavier_uniform_(self.weight_hh)

    @property
    def gate_size(self) -> int:
        """G*H: the width of the gate pre-activations."""
        return self.weight_ih.shape[1]

    def input_gates(self, projection: torch.Tensor) -> torch.Tensor:
        """Finish the input half of the gates: (D, B, *, G*H) projection -> normalized + bias."""
        middle = [1] * (projection.dim() - 2)
        bias = self.bias.view(self.num_directions, *middle, self.gate_size)
        if self.layer_norm:
            gain = self.input_norm_weight.view(self.num_directions, *middle, self.gate_size)
            return scaled_layer_norm(projection, gain, bias)
        return projection + bias

    def project_input(self, inputs: torch.Tensor) -> torch.Tensor:
        """Input gates of every step in one batched GEMM: (D, B, T, I) -> (D, B, T, G*H), each
        direction's inputs in the order it reads them."""
        directions, batch, steps, _ = inputs.shape
        flat = inputs.reshape(directions, batch * steps, self.input_size)
        projection = torch.bmm(flat, self.weight_ih.transpose(1, 2))  # (D, B*T, G*H)
        return self.input_gates(projection.view(directions, batch, steps, self.gate_size))

    def recurrent_weight(self) -> torch.Tensor:
        """(D, H, G*H) weight of h(t-1), for `step`; a loop takes it once (see autocast.py)."""
        return cast_once(self.weight_hh.transpose(1, 2))

    def step(
        self,
        input_gates: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
        recurrent_mask: torch.Tensor | None = None,
        recurrent_weight: torch.Tensor | None = None,
        recurrent: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step: input gates (D, B, G*H), hidden and cell (D, B, H) -> new hidden and cell.

        `recurrent_mask` (D, B, H) is the variational dropout mask on h(t-1), the same at every
        step of a sequence (Gal & Ghahramani, 2016). `recurrent_weight`: `recurrent_weight()`,
        taken once by a loop over steps. `recurrent` (D, B, G*H): U (h(t-1) * mask), when the
        caller computed it in a product of its own; then the mask and weight go unused.
        """
        if recurrent is None:
            hidden_in = hidden if recurrent_mask is None else hidden * recurrent_mask
            weight = self.recurrent_weight() if recurrent_weight is None else recurrent_weight
            recurrent = torch.bmm(hidden_in, weight)  # (D, B, G*H)
        if self.layer_norm:
            recurrent = scaled_layer_norm(recurrent, self.hidden_norm_weight)
        return self.update(input_gates, recurrent, hidden, cell)

    def update(
        self,
        input_gates: torch.Tensor,
        recurrent: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The pointwise part of a step: both halves of the gates (D, B, G*H), the previous
        hidden and cell state (D, B, H) -> new hidden and cell state (None without one)."""
        raise NotImplementedError


class LSTMCell(RecurrentCell):
    """LSTM (Hochreiter & Schmidhuber, 1997) with a forget gate; with layer norm, the cell
    state is normalized before its output tanh (Ba et al., 2016, eq. 22)."""

    gates = 4
    has_cell_state = True
    forget_gate = 1  # gate order i, f, g, o
    fusable = True

    def __init__(
        self, input_size: int, hidden_size: int, num_directions: int = 1, layer_norm: bool = True
    ) -> None:
        super().__init__(input_size, hidden_size, num_directions, layer_norm)
        if layer_norm:
            self.cell_norm_weight = nn.Parameter(torch.ones(num_directions, 1, hidden_size))
            self.cell_norm_bias = nn.Parameter(torch.zeros(num_directions, 1, hidden_size))

    def update(
        self,
        input_gates: torch.Tensor,
        recurrent: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """c(t) = f * c(t-1) + i * g, h(t) = o * tanh(LN(c(t)))."""
        # chunk, not slices: the backward of a slice zero-fills a full-size gradient, chunk's
        # is one concatenation
        input_gate, forget_gate, candidate, output_gate = (input_gates + recurrent).chunk(4, -1)
        new_cell = torch.addcmul(
            torch.sigmoid(input_gate) * torch.tanh(candidate), torch.sigmoid(forget_gate), cell
        )  # (D, B, H)
        shown = new_cell
        if self.layer_norm:
            shown = scaled_layer_norm(new_cell, self.cell_norm_weight, self.cell_norm_bias)
        return torch.sigmoid(output_gate) * torch.tanh(shown), new_cell


class GRUCell(RecurrentCell):
    """GRU (Cho et al., 2014), nn.GRU's equations, with the candidate's recurrent bias folded
    into the one bias."""

    gates = 3

    def update(
        self,
        input_gates: torch.Tensor,
        recurrent: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
    ) -> tuple[torch.Tensor, None]:
        """h(t) = (1 - z) * n + z * h(t-1), n = tanh(W_n x + r * U_n h(t-1))."""
        size = self.hidden_size
        input_reset_update, input_candidate = input_gates.split((2 * size, size), dim=-1)
        recurrent_reset_update, recurrent_candidate = recurrent.split((2 * size, size), dim=-1)
        reset, update = torch.sigmoid(input_reset_update + recurrent_reset_update).chunk(2, -1)
        candidate = torch.tanh(torch.addcmul(input_candidate, reset, recurrent_candidate))
        return torch.lerp(candidate, hidden, update), None


class TanhCell(RecurrentCell):
    """The plain (Elman) recurrent cell: h(t) = tanh(W x + U h(t-1) + b)."""

    gates = 1

    def update(
        self,
        input_gates: torch.Tensor,
        recurrent: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
    ) -> tuple[torch.Tensor, None]:
        """h(t) = tanh(both halves of the gate)."""
        return torch.tanh(input_gates + recurrent), None


def scaled_layer_norm(
    values: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """LN(values) over the last dimension F, times `gain` and plus `bias` (D, 1, ..., F), one of
    each per direction, D = values.shape[0].

    torch's CPU kernel normalizes in a vectorized loop only when it is given both an affine
    weight and a bias; without them it takes a scalar loop, 1.4-3.5x slower forward at the
    model's shapes, for the same values. So it gets ones and zeros, and the gain and bias follow
    in one product. They are not handed to the kernel itself: its backward sums their gradients
    in an order that depends on the thread count, where the product's backward does not, so
    training gives the same parameters with any number of threads (tests/model/test_recurrent.py,
    tests/test_distributed.py)."""
    size = values.shape[-1]
    normalized = F.layer_norm(values, (size,), values.new_ones(size), values.new_zeros(size))
    return normalized * gain if bias is None else torch.addcmul(bias, normalized, gain)


CELL_TYPES: dict[str, type[RecurrentCell]] = {"rnn": TanhCell, "gru": GRUCell, "lstm": LSTMCell}
CellType = Literal[tuple(CELL_TYPES)]  # the configuration's names, for argument parsing


def make_cell(
    cell_type: str,
    input_size: int,
    hidden_size: int,
    num_directions: int = 1,
    layer_norm: bool = True,
) -> RecurrentCell:
    """The registered cell class `cell_type` (a key of CELL_TYPES) with these sizes."""
    if cell_type not in CELL_TYPES:
        raise ValueError(f"cell_type must be one of {', '.join(CELL_TYPES)}, not {cell_type!r}")
    return CELL_TYPES[cell_type](input_size, hidden_size, num_directions, layer_norm)
