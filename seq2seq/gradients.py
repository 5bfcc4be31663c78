"""Gradient measurements: global and per-module norms, and gradient flow through time.

Shared by the gradient-health callback (during training) and `seq2seq grad-flow` (on demand).
Shapes: D directions, B batch, T time, H hidden size, P parameters.

Back-propagation through time multiplies the same recurrent Jacobian once per step, so
||dL/dh(t)|| shrinks or grows roughly geometrically with the distance between t and the loss;
`flow_through_time` measures it at every step of a recurrent layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.model.cells import CELL_TYPES
from seq2seq.model.initialization import RecurrentInit, initialize_cell
from seq2seq.model.recurrent import RecurrentLayer, reverse_within_lengths

MODULE_GROUPS = ("embeddings", "encoder", "attention", "decoder", "output")


def module_group(name: str) -> str:
    """Which part of a Seq2Seq model the parameter `name` belongs to (one of MODULE_GROUPS)."""
    parts = name.split(".")
    if any("embedding" in part for part in parts):
        return "embeddings"  # a tied output projection is the target embedding: counted here
    if "attention" in parts:
        return "attention"
    if "output" in parts or "pre_output" in parts:
        return "output"
    return "encoder" if "encoder" in parts else "decoder"


@dataclass(frozen=True)
class GradientNorms:
    """L2 norms of the gradients of named parameters, computed in one pass."""

    names: tuple[str, ...]
    per_parameter: torch.Tensor  # (P,)
    total: torch.Tensor  # () the global norm, as torch.nn.utils.clip_grad_norm_ computes it

    @classmethod
    def of(cls, named_parameters: Iterable[tuple[str, nn.Parameter]]) -> GradientNorms:
        """The norms of every parameter that has a gradient."""
        named = [(name, p.grad) for name, p in named_parameters if p.grad is not None]
        if not named:
            return cls((), torch.zeros(0), torch.zeros(()))
        device = named[0][1].device
        per_parameter = torch.stack(
            [torch.linalg.vector_norm(grad.detach()).to(device) for _, grad in named]
        )  # (P,)
        total = torch.linalg.vector_norm(per_parameter)
        return cls(tuple(name for name, _ in named), per_parameter, total)

    def by_module(self) -> dict[str, torch.Tensor]:
        """Global norm of each MODULE_GROUPS member that has gradients."""
        squares: dict[str, list[torch.Tensor]] = {}
        for name, norm in zip(self.names, self.per_parameter, strict=True):
            squares.setdefault(module_group(name), []).append(norm.square())
        return {group: torch.stack(values).sum().sqrt() for group, values in squares.items()}


def nonfinite_gradient_elements(parameters: Iterable[nn.Parameter]) -> int:
    """Gradient entries that are NaN or infinite."""
    return sum(int((~p.grad.isfinite()).sum()) for p in parameters if p.grad is not None)


@contextmanager
def recording_steps(layer: RecurrentLayer) -> Iterator[list[list[torch.Tensor]]]:
    """Within the block, every forward of `layer` is called with `keep_steps=True` and appends
    its T x (D, B, H) step states; the hooks that do it are gone after the block."""
    recorded: list[list[torch.Tensor]] = []

    def keep_steps(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "keep_steps": True}

    handles = (
        layer.register_forward_pre_hook(keep_steps, with_kwargs=True),
        layer.register_forward_hook(lambda module, inputs, output: recorded.append(output.steps)),
    )
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def flow_through_time(
    layer: RecurrentLayer,
    lengths: torch.Tensor,
    loss_of_forward: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """(D, B, T) ||dL/dh(t)|| at every position of every sequence, NaN at padding.

    `loss_of_forward` runs a forward pass that goes through `layer` once and returns the loss.
    Position t is where the state sits in the sequence: the backward direction's step s of a
    sequence of length n holds position n - 1 - s. Parameter gradients are left untouched.
    """
    with recording_steps(layer) as recorded:
        loss = loss_of_forward()
    steps = recorded[-1]
    gradients = torch.autograd.grad(loss, steps)  # T x (D, B, H)
    norms = torch.stack([g.norm(dim=-1) for g in gradients], dim=-1)  # (D, B, T)
    positions = torch.arange(norms.shape[-1], device=norms.device)  # (T,)
    real = positions < lengths.to(norms.device).unsqueeze(1)  # (B, T)
    if norms.shape[0] == 2:
        order = reverse_within_lengths(lengths.to(norms.device), norms.shape[-1])  # (B, T)
        norms = torch.stack((norms[0], norms[1].gather(1, order)))
    return norms.masked_fill(~real, float("nan"))


def mean_over_sequences(norms: torch.Tensor) -> torch.Tensor:
    """(D, B, T) per-sequence norms, NaN at padding -> (D, T) mean over the sequences present."""
    return norms.nanmean(dim=1)


@dataclass(frozen=True)
class FlowCurve:
    """||dL/dh(t)|| against position for one recurrent layer, L a readout of the last state."""

    name: str
    norms: list[float]  # position 0 (farthest from the loss) .. T-1 (where the loss reads)

    @property
    def first_to_last(self) -> float:
        """||dL/dh(0)|| / ||dL/dh(T-1)||: how much of the gradient survives T-1 steps."""
        return self.norms[0] / self.norms[-1]


def synthetic_flow(
    layer: RecurrentLayer, length: int, batch_size: int = 16, seed: int = 0
) -> torch.Tensor:
    """(T,) mean ||dL/dh(t)|| of the layer's forward direction over unit-variance random inputs.

    L = w . h(T-1) with a fixed random readout w of unit norm, so dL/dh(T-1) = w at the last
    step and every earlier norm is what back-propagation through time carries back.
    """
    parameter = next(layer.parameters())
    generator = torch.Generator().manual_seed(seed)
    size = (batch_size, length, layer.cell.input_size)
    inputs = torch.randn(size, generator=generator).to(parameter)  # (B, T, I)
    readout = torch.randn(layer.cell.hidden_size, generator=generator).to(parameter)  # (H,)
    readout = readout / readout.norm()
    lengths = torch.full((batch_size,), length, dtype=torch.int64)

    def loss() -> torch.Tensor:
        return (layer(inputs, lengths).hidden[0] @ readout).sum()

    was_training = layer.training
    layer.eval()
    with torch.enable_grad():
        norms = flow_through_time(layer, lengths, loss)  # (D, B, T)
    layer.train(was_training)
    return mean_over_sequences(norms)[0]


def cell_comparison(
    input_size: int,
    hidden_size: int,
    length: int,
    forget_bias: float,
    recurrent_init: RecurrentInit,
    seed: int = 0,
) -> list[FlowCurve]:
    """Flow curves of a freshly initialized layer of every registered cell type (rnn, gru,
    lstm), without and with layer norm."""
    curves = []
    for cell_type in CELL_TYPES:
        for layer_norm in (False, True):
            torch.manual_seed(seed)
            layer = RecurrentLayer(cell_type, input_size, hidden_size, False, layer_norm).double()
            initialize_cell(layer.cell, forget_bias, recurrent_init)
            norms = synthetic_flow(layer, length, seed=seed)
            name = f"{cell_type} {'with' if layer_norm else 'without'} layer norm"
            curves.append(FlowCurve(name, norms.tolist()))
    return curves
