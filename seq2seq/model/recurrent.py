"""Run a recurrent cell over a padded batch: input projections hoisted, directions batched.

Shapes: D directions, B batch, T time, I input size, H hidden size, G gates.

Speed by design:
- the input half of every gate for every step is one GEMM before the loop (`project_input`);
  the loop holds only the recurrent GEMM and pointwise work;
- the two directions of a bidirectional layer run in the same loop as one batched GEMM: the
  backward direction reads each sequence reversed within its own length, so both directions
  start at a real token and padding always comes last;
- padding is handled by holding the state where a sequence has ended, and only from the first
  step at which some sequence has ended (length-bucketed batches rarely need it);
- inputs that are rows of a table (an embedding's, outside training) come as `IndexedInputs`:
  the input projection and its layer norm run once per distinct row, and one gather gives
  every position its own;
- with layer norm and recurrent dropout off, an LSTM runs torch's fused kernel on the very same
  parameters (`torch.lstm`, the function behind nn.LSTM).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seq2seq.model.cells import CellType, make_cell
from seq2seq.model.dropout import sequence_mask


class IndexedInputs(NamedTuple):
    """A layer's inputs (B, T, I) given as their distinct rows and each position's row,
    inputs = rows[index]: the input gates are then computed once per distinct row (a batch of
    Multi30k test sentences holds 4-5x fewer distinct words than positions)."""

    rows: torch.Tensor  # (U, I)
    index: torch.Tensor  # (B, T) long, the row of each position

    def dense(self) -> torch.Tensor:
        """The inputs (B, T, I) themselves."""
        return self.rows[self.index]


class LayerOutput(NamedTuple):
    """What a recurrent layer returns."""

    outputs: torch.Tensor  # (B, T, D*H), zero at padded positions
    hidden: torch.Tensor  # (D, B, H) at each sequence's last real token
    cell: torch.Tensor | None  # (D, B, H), LSTM only
    steps: list[torch.Tensor] | None = None  # T x (D, B, H) step states, when `keep_steps`


def reverse_within_lengths(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) time index reading each sequence backwards; padded positions map to themselves."""
    positions = torch.arange(steps, device=lengths.device)  # (T,)
    reversed_positions = lengths.unsqueeze(1) - 1 - positions  # (B, T)
    return torch.where(reversed_positions >= 0, reversed_positions, positions)


def gather_time(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, T, F) reordered along time by index (B, T)."""
    return values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


class RecurrentLayer(nn.Module):
    """One uni- or bidirectional recurrent layer with layer norm and variational recurrent dropout.

    Args:
        cell_type: a key of `CELL_TYPES` (cells.py): `lstm`, `gru` or `rnn` (tanh).
        input_size: features of each input step.
        hidden_size: features of the state, per direction.
        bidirectional: also read each sequence backwards and concatenate both outputs.
        layer_norm: layer-normalize the cell (Ba et al., 2016).
        recurrent_dropout: variational dropout rate on h(t-1), one mask per sequence.
        fused: use torch's fused LSTM kernel; default: whenever it computes the same function
            (a `fusable` cell, no layer norm, no recurrent dropout).
    """

    def __init__(
        self,
        cell_type: CellType,
        input_size: int,
        hidden_size: int,
        bidirectional: bool = False,
        layer_norm: bool = True,
        recurrent_dropout: float = 0.0,
        fused: bool | None = None,
    ) -> None:
        super().__init__()
        self.cell = make_cell(
            cell_type, input_size, hidden_size, 2 if bidirectional else 1, layer_norm
        )
        self.recurrent_dropout = recurrent_dropout
        can_fuse = self.cell.fusable and not layer_norm and recurrent_dropout == 0.0
        if fused and not can_fuse:
            raise ValueError(
                "the fused kernel needs an LSTM without layer norm or recurrent dropout"
            )
        self.fused = can_fuse if fused is None else fused

    def forward(
        self,
        inputs: torch.Tensor | IndexedInputs,
        lengths: torch.Tensor,
        keep_steps: bool = False,
        scan: bool = False,
    ) -> LayerOutput:
        """inputs (B, T, I) or their `IndexedInputs`, lengths (B,) with 1 <= length <= T;
        `keep_steps` also returns every step's state (for gradient probes: dL/dh(t) at each
        step); `scan` runs the loop as one `torch.scan` over time instead of Python steps, the
        same function in a form that export traces for any length (an ONNX Scan)."""
        if scan:
            return self._scan(inputs, lengths)
        if self.fused and not keep_steps:  # the fused kernel has no per-step tensors
            dense = inputs.dense() if isinstance(inputs, IndexedInputs) else inputs
            return self._fused(dense, lengths)
        return self._loop(inputs, lengths, keep_steps)

    def _loop(
        self, inputs: torch.Tensor | IndexedInputs, lengths: torch.Tensor, keep_steps: bool
    ) -> LayerOutput:
        cell_module = self.cell
        gates, backward_order, running = self._gates(inputs, lengths)
        batch, steps = gates.shape[1:3]
        hidden, cell = self._initial_state(gates)
        mask = sequence_mask(hidden.shape, self.recurrent_dropout, hidden, self.training)
        shortest = int(lengths.min())
        recurrent_weight = cell_module.recurrent_weight()  # (D, H, G*H), cast once
        outputs = []
        # unbind once: indexing gates[:, :, step] would make backward zero-fill a full-size
        # gradient at every step, quadratic in the length
        for step, step_gates in enumerate(gates.unbind(2)):
            new_hidden, new_cell = cell_module.step(
                step_gates, hidden, cell, mask, recurrent_weight
            )
            if step >= shortest:  # some sequences have ended: hold their state
                active = running[step].view(1, batch, 1)
                new_hidden = torch.where(active, new_hidden, hidden)
                new_cell = None if cell is None else torch.where(active, new_cell, cell)
            hidden, cell = new_hidden, new_cell
            outputs.append(hidden)
        stacked = torch.stack(outputs, dim=2)  # (D, B, T, H)
        if steps > shortest:
            stacked = stacked * running.t().unsqueeze(-1)  # zero past each end
        merged = self._merge(stacked, backward_order)
        return LayerOutput(merged, hidden, cell, outputs if keep_steps else None)

    def _scan(self, inputs: torch.Tensor | IndexedInputs, lengths: torch.Tensor) -> LayerOutput:
        """`_loop` without dropout or per-step states, as one torch.scan over time (torch 2.8+)."""
        from torch._higher_order_ops.scan import scan as torch_scan

        cell_module = self.cell
        gates, backward_order, running = self._gates(inputs, lengths)
        recurrent_weight = cell_module.recurrent_weight()  # (D, H, G*H)

        def step(carry: tuple[torch.Tensor, ...], inputs_now: tuple[torch.Tensor, ...]) -> tuple:
            step_gates, active = inputs_now  # (D, B, G*H), (B,)
            running_now = active.view(1, -1, 1)
            cell = carry[1] if len(carry) == 2 else None
            new_state = cell_module.step(step_gates, carry[0], cell, None, recurrent_weight)
            pairs = zip(new_state, carry, strict=False)  # (hidden, cell) or (hidden, None)
            carried = tuple(torch.where(running_now, new, old) for new, old in pairs)
            return carried, carried[0].clone()  # scan's outputs may not alias its carry

        initial = tuple(state for state in self._initial_state(gates) if state is not None)
        final, stacked = torch_scan(step, initial, (gates.permute(2, 0, 1, 3), running))
        stacked = stacked.permute(1, 2, 0, 3) * running.t().unsqueeze(-1)  # (D, B, T, H)
        cell = final[1] if len(final) == 2 else None
        return LayerOutput(self._merge(stacked, backward_order), final[0], cell)

    def _gates(
        self, inputs: torch.Tensor | IndexedInputs, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Input gates of every step (D, B, T, G*H), the backward direction's reading order
        (B, T) (None with one direction), and which sequences are still running (T, B).

        The backward direction reads its inputs reversed, rather than its gates: the gather and
        the stacking (and in backward their scatter) move I features a step instead of G*H, or
        with `IndexedInputs` one row index."""
        indexed = isinstance(inputs, IndexedInputs)
        steps = (inputs.index if indexed else inputs).shape[1]
        backward_order = None
        if self.cell.num_directions == 2:
            backward_order = reverse_within_lengths(lengths, steps)  # (B, T)
        running = torch.arange(steps, device=lengths.device).unsqueeze(1) < lengths  # (T, B)
        if indexed:
            return self._indexed_gates(inputs, backward_order), backward_order, running
        if backward_order is not None:
            reading = torch.stack((inputs, gather_time(inputs, backward_order)))  # (D, B, T, I)
        else:
            reading = inputs.unsqueeze(0)  # (1, B, T, I)
        return self.cell.project_input(reading), backward_order, running  # (D, B, T, G*H)

    def _indexed_gates(
        self, inputs: IndexedInputs, backward_order: torch.Tensor | None
    ) -> torch.Tensor:
        """(D, B, T, G*H) input gates of `inputs`: those of each distinct row, (D, U, G*H), then
        one gather of every direction's rows in its reading order."""
        directions, (distinct, size) = self.cell.num_directions, inputs.rows.shape
        rows = inputs.rows.expand(directions, 1, distinct, size)  # (D, 1, U, I)
        table = self.cell.project_input(rows).view(directions * distinct, -1)  # (D*U, G*H)
        index = inputs.index.unsqueeze(0)  # (1, B, T)
        if backward_order is not None:
            index = torch.stack((inputs.index, inputs.index.gather(1, backward_order)))
        offsets = torch.arange(directions, device=index.device).view(-1, 1, 1) * distinct
        gates = table.index_select(0, (index + offsets).flatten())  # (D*B*T, G*H)
        return gates.view(*index.shape, table.shape[-1])

    def _initial_state(self, gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Zero hidden and (LSTM) cell state, (D, B, H) each, for the input gates (D, B, T, G*H)."""
        cell_module = self.cell
        shape = (cell_module.num_directions, gates.shape[1], cell_module.hidden_size)
        cell = gates.new_zeros(shape) if cell_module.has_cell_state else None
        return gates.new_zeros(shape), cell

    def _merge(self, stacked: torch.Tensor, backward_order: torch.Tensor | None) -> torch.Tensor:
        """Step outputs (D, B, T, H) in reading order -> (B, T, D*H) in source order."""
        if backward_order is not None:
            stacked = torch.stack((stacked[0], gather_time(stacked[1], backward_order)))
        batch, steps = stacked.shape[1], stacked.shape[2]
        return stacked.permute(1, 2, 0, 3).reshape(batch, steps, -1)

    def _fused(self, inputs: torch.Tensor, lengths: torch.Tensor) -> LayerOutput:
        cell_module = self.cell
        directions, size = cell_module.num_directions, cell_module.hidden_size
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        no_bias = torch.zeros_like(cell_module.bias[0])  # torch's kernel adds two biases
        weights = []
        for direction in range(directions):
            weights += [
                cell_module.weight_ih[direction],
                cell_module.weight_hh[direction],
                cell_module.bias[direction],
                no_bias,
            ]
        initial = inputs.new_zeros(directions, inputs.shape[0], size)
        data, hidden, cell = torch.lstm(
            packed.data,
            packed.batch_sizes,
            (initial, initial),
            weights,
            True,  # has_biases
            1,  # num_layers
            0.0,  # dropout
            self.training,
            directions == 2,
        )
        restored = PackedSequence(
            data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
        )
        outputs, _ = pad_packed_sequence(restored, batch_first=True, total_length=inputs.shape[1])
        order = packed.unsorted_indices
        return LayerOutput(outputs, hidden.index_select(1, order), cell.index_select(1, order))
