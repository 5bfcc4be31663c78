"""Encoder: embeddings -> bidirectional recurrent layers -> memory and final states.

Shapes: B batch, S source length, E embedding size, H hidden size per direction, V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from seq2seq.model.cells import CellType
from seq2seq.model.dropout import variational_dropout, word_dropout
from seq2seq.model.recurrent import IndexedInputs, RecurrentLayer


class EncoderOutput(NamedTuple):
    """What the encoder gives the decoder."""

    memory: torch.Tensor  # (B, S, 2H) top layer outputs, zero at padding
    src_mask: torch.Tensor  # (B, S) True at real tokens
    final_hidden: (
        torch.Tensor
    )  # (B, 2H) top layer: forward at the last token, backward at the first


class Encoder(nn.Module):
    """A stack of bidirectional recurrent layers over source embeddings.

    Variational dropout: word types replaced by <unk> (`embedding_dropout`), one mask
    per sequence on the input of every layer and on the memory (`dropout`), and one on h(t-1)
    inside every layer (`recurrent_dropout`). With `residual`, every layer after the first adds
    its input to its output.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        hidden_size: int,
        num_layers: int,
        cell_type: CellType,
        layer_norm: bool,
        embedding_dropout: float,
        dropout: float,
        recurrent_dropout: float,
        unk_id: int,
        fused: bool | None = None,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.embedding = embedding
        self.embedding_scale = embedding.embedding_dim**0.5  # see initialization.py
        self.unk_id = unk_id
        self.embedding_dropout = embedding_dropout
        self.dropout = dropout
        input_sizes = [embedding.embedding_dim] + [2 * hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(
            RecurrentLayer(cell_type, size, hidden_size, True, layer_norm, recurrent_dropout, fused)
            for size in input_sizes
        )

    @property
    def output_size(self) -> int:
        """M: the memory size, both directions' states side by side."""
        return 2 * self.layers[0].cell.hidden_size

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, scan: bool = False
    ) -> EncoderOutput:
        """src (B, S) ids, src_lengths (B,) with 1 <= length <= S; `scan`: every layer's loop
        as one torch.scan (RecurrentLayer.forward), for export."""
        states = self._embedded(src, scan)
        for index, layer in enumerate(self.layers):
            layer_output = layer(states, src_lengths, scan=scan)
            outputs = layer_output.outputs  # (B, S, 2H)
            if self.residual and index > 0:
                outputs = outputs + states
            states = variational_dropout(outputs, self.dropout, self.training)
        final_hidden = layer_output.hidden.transpose(0, 1).reshape(src.shape[0], -1)  # (B, 2H)
        positions = torch.arange(src.shape[1], device=src.device)  # (S,)
        src_mask = positions < src_lengths.to(src.device).unsqueeze(1)  # (B, S)
        return EncoderOutput(states, src_mask, final_hidden)

    def _embedded(self, src: torch.Tensor, scan: bool) -> torch.Tensor | IndexedInputs:
        """The first layer's inputs: src (B, S) embedded, (B, S, E), unit variance. Outside
        training, where no dropout makes two occurrences of a word differ, as each distinct
        word's embedding and where it occurs (`IndexedInputs`), so that the first layer computes
        input gates once per word; for export (`scan`), which traces the plain form, as a
        tensor."""
        if self.training or scan:
            vocab_size = self.embedding.num_embeddings
            rate = self.embedding_dropout
            kept = word_dropout(src, vocab_size, rate, self.training, self.unk_id)
            embedded = self.embedding(kept) * self.embedding_scale
            return variational_dropout(embedded, self.dropout, self.training)
        words, index = torch.unique(src, return_inverse=True)  # (U,), (B, S)
        return IndexedInputs(self.embedding(words) * self.embedding_scale, index)
