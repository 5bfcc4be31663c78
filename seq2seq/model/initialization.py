"""Initialization that fights vanishing and exploding gradients from the first step.

- Recurrent weights: each gate's H x H block orthogonal (Saxe et al., 2014). Its singular
  values are all 1, so repeated multiplication through time neither shrinks nor blows up the
  signal at the start of training.
- Input and output weights: Xavier/Glorot uniform (Glorot & Bengio, 2010), per gate block for
  recurrent cells, so each gate sees fan-in I and fan-out H.
- LSTM forget-gate bias 1 (Gers et al., 2000; Jozefowicz et al., 2015): the cell starts out
  remembering, so gradients flow through c(t) over long distances.
- Embeddings: normal with standard deviation E^-1/2, padding row zero, so that a tied output
  projection starts with logits of unit scale; the encoder and decoder multiply looked-up
  embeddings by sqrt(E) (Vaswani et al., 2017), so the recurrent layers see unit-variance
  inputs. Without that factor the source signal reaching the decoder was so weak that training
  sat on the unigram plateau (Multi30k validation BLEU 0.0 after one epoch).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from seq2seq.model.cells import RecurrentCell

RecurrentInit = Literal["orthogonal", "xavier"]


def initialize(
    model: nn.Module, forget_bias: float = 1.0, recurrent_init: RecurrentInit = "orthogonal"
) -> None:
    """Initialize every recurrent cell, linear layer and embedding inside `model` in place.

    Embeddings go last: a tied output projection shares the embedding matrix, and the
    embedding's initialization must be the one that stays.
    """
    for module in model.modules():
        if isinstance(module, RecurrentCell):
            initialize_cell(module, forget_bias, recurrent_init)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=module.embedding_dim**-0.5)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()


@torch.no_grad()
def initialize_cell(cell: RecurrentCell, forget_bias: float, recurrent_init: RecurrentInit) -> None:
    """Xavier input and orthogonal (or Xavier) recurrent blocks per gate, the forget-gate bias
    (cells that have one) at `forget_bias`, every other bias zero."""
    size = cell.hidden_size
    for direction in range(cell.num_directions):
        for gate in range(cell.gates):
            rows = slice(gate * size, (gate + 1) * size)
            nn.init.xavier_uniform_(cell.weight_ih[direction, rows])
            if recurrent_init == "orthogonal":
                nn.init.orthogonal_(cell.weight_hh[direction, rows])
            else:
                nn.init.xavier_uniform_(cell.weight_hh[direction, rows])
    cell.bias.zero_()
    if cell.forget_gate is not None:
        cell.bias[:, cell.forget_gate * size : (cell.forget_gate + 1) * size] = forget_bias
