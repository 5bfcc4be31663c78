"""The two functions an export holds, as torch modules with flat tensor inputs and outputs: the
encoder (with the decoder's initial state) and one decoder step. They run the model's own code,
so the exported graphs compute what search computes in PyTorch.

The recurrent state travels as one tensor (C, L, R, H): C = 2 for an LSTM (hidden, cell), 1
otherwise; L decoder layers; R hypothesis rows; H decoder hidden size. Shapes otherwise: B
sentences, S source length, M memory size, A attention size, V' the target words the model
scores (Seq2Seq.output_words).
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.model.decoder import DecoderState, SearchWeights
from seq2seq.model.seq2seq import Seq2Seq

ENCODER_INPUTS = ("src", "src_lengths")
ENCODER_OUTPUTS = ("memory", "keys", "padding_bias", "state")
STEP_INPUTS = ("tokens", "state", "memory", "keys", "padding_bias")
STEP_OUTPUTS = ("log_probs", "next_state", "attention")


def stack_state(state: DecoderState) -> torch.Tensor:
    """The recurrent state of a DecoderState as one (C, L, R, H) tensor."""
    layers = [torch.cat(state.hidden)]  # (L, R, H)
    if state.cell:
        layers.append(torch.cat(state.cell))
    return torch.stack(layers)


class EncoderGraph(nn.Module):
    """src (B, S) int64, src_lengths (B,) int64 -> memory (B, S, M), keys (B, S, A),
    padding_bias (B, S) (0 at tokens, -inf at padding), state (C, L, B, H) before the first
    target token. The recurrent layers run as torch.scan: one ONNX Scan over any length."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """See the class."""
        encoded = self.model.encoder(src, src_lengths, scan=True)
        state = self.model.decoder.initial_state(encoded)
        return state.memory, state.keys, state.padding_bias, stack_state(state)


class DecoderStepGraph(nn.Module):
    """tokens (R,) int64, state (C, L, R, H), memory (B, S, M), keys (B, S, A), padding_bias
    (B, S) -> log_probs (R, V'), next_state (C, L, R, H), attention (R, S); the R rows are K
    adjacent hypotheses per sentence (R = B x K), as in PyTorch search.

    The per-word tables of search (Decoder.search_weights: the scored words' embeddings, output
    rows and first-layer input projections, (V', G*H)) are built here once and stored in the
    graph: each step gathers rows of them, as PyTorch search does; token ids and the
    log-probabilities' columns are positions in the model's output words."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model
        scored = model.search_weights()
        tied = model.decoder.output.weight is model.decoder.embedding.weight
        words = scored.words  # the output layer's V' rows alone: no aligned rows in the graph
        tables = {
            "embedding_projections": scored.embedding_projections,
            "embeddings": scored.embeddings,
            "output_weight": None if tied else scored.output_weight[:words],  # tied: embeddings
            "output_bias": scored.output_bias[:words],
        }
        for name, table in tables.items():
            kept = None if table is None else table.clone()
            self.register_buffer(name, kept, persistent=False)

    def forward(
        self,
        tokens: torch.Tensor,
        state: torch.Tensor,
        memory: torch.Tensor,
        keys: torch.Tensor,
        padding_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """See the class."""
        decoder = self.model.decoder
        weights = SearchWeights(
            self.embedding_projections,
            decoder.step_weights(),
            self.embeddings,
            self.embeddings if self.output_weight is None else self.output_weight,
            self.output_bias,
        )
        hidden = tuple(state[0].split(1))  # L x (1, R, H)
        cell = tuple(state[1].split(1)) if state.shape[0] == 2 else ()
        current = DecoderState(hidden, cell, memory, keys, padding_bias, weights)
        log_probs, next_state, attention = self.model.step(current, tokens)
        return log_probs, stack_state(next_state), attention
