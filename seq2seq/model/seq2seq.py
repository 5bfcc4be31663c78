"""Seq2Seq: encode() once, forward() for teacher-forced training, step() for search.

Shapes: B batch, S source length, T target length, V target vocabulary, V' <= V the target
words the output layer scores (`restrict_output`; all V unless restricted): logits, log-
probabilities and search's token ids are positions in `output_words()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from seq2seq.errors import require
from seq2seq.model.cells import CELL_TYPES, CellType
from seq2seq.model.decoder import Decoder, DecoderState, SearchWeights
from seq2seq.model.encoder import Encoder, EncoderOutput
from seq2seq.model.initialization import RecurrentInit, initialize

SIZES = (
    "embedding_size",
    "encoder_hidden_size",
    "encoder_layers",
    "decoder_hidden_size",
    "decoder_layers",
    "attention_size",
)

# The output layer's rows in training padded to a multiple of this (Decoder.forward): the row
# counts of Multi30k batches then recur, about 1.5% more output-layer rows (bench/gemm_shapes.py).
OUTPUT_ROWS_MULTIPLE = 64


class StepOutput(NamedTuple):
    """What a search step returns."""

    log_probs: torch.Tensor  # (B, V') over output_words()
    state: DecoderState
    attention: torch.Tensor  # (B, S)


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Architecture of a Seq2Seq model.

    Args:
        src_vocab_size: source vocabulary size.
        tgt_vocab_size: target vocabulary size.
        pad_id: id of padding, whose embedding stays zero.
        unk_id: id of the unknown word, which replaces words dropped by embedding dropout.
        embedding_size: source and target embedding size.
        encoder_hidden_size: encoder state size per direction.
        encoder_layers: bidirectional encoder layers.
        decoder_hidden_size: decoder state size.
        decoder_layers: decoder layers.
        attention_size: size of the additive attention's hidden layer.
        cell_type: `lstm`, `gru` or `rnn` (tanh), for encoder and decoder.
        layer_norm: layer normalization inside every recurrent cell.
        embedding_dropout: rate of word types replaced by <unk> in a sentence (one draw per type).
        dropout: variational dropout on every layer's input and output, one mask per sentence.
        recurrent_dropout: variational dropout on h(t-1), one mask per sentence and layer.
        tie_embeddings: the output projection reuses the target embedding matrix.
        share_embeddings: source and target share one embedding matrix (joint vocabulary).
        forget_bias: initial LSTM forget-gate bias.
        recurrent_init: `orthogonal` or `xavier` initial recurrent weights.
        fused_encoder: run encoder LSTMs with torch's fused kernel; default: whenever equivalent
            (no layer norm, no recurrent dropout).
        residual: from the second recurrent layer on (encoder and decoder), a layer's input is
            added to its output, as in Nematus, Marian and Sockeye's deep RNNs.
    """

    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    pad_id: int = 0
    unk_id: int = 1
    embedding_size: int = 256
    encoder_hidden_size: int = 256
    encoder_layers: int = 1
    decoder_hidden_size: int = 512
    decoder_layers: int = 1
    attention_size: int = 256
    cell_type: CellType = "lstm"
    layer_norm: bool = True
    embedding_dropout: float = 0.1
    dropout: float = 0.2
    recurrent_dropout: float = 0.1
    tie_embeddings: bool = True
    share_embeddings: bool = False
    forget_bias: float = 1.0
    recurrent_init: RecurrentInit = "orthogonal"
    fused_encoder: bool | None = None
    residual: bool = False

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size"):
            value = getattr(self, name)
            require(value >= 5, f"architecture: {name} must be at least 5, not {value}")
        for name in SIZES:
            value = getattr(self, name)
            require(value >= 1, f"architecture: {name} must be at least 1, not {value}")
        for name in ("embedding_dropout", "dropout", "recurrent_dropout"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, f"architecture: {name} must lie in [0, 1), not {value}")
        vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        for name in ("pad_id", "unk_id"):
            value = getattr(self, name)
            require(0 <= value < vocab, f"architecture: {name} {value} is not in the vocabulary")
        known = ", ".join(CELL_TYPES)
        require(
            self.cell_type in CELL_TYPES,
            f"architecture: cell_type must be one of {known}, not {self.cell_type!r}",
        )
        require(
            math.isfinite(self.forget_bias),
            f"architecture: forget_bias must be a number, not {self.forget_bias}",
        )


class Seq2Seq(nn.Module):
    """Bidirectional recurrent encoder, Bahdanau attention, recurrent decoder."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        if config.share_embeddings and config.src_vocab_size != config.tgt_vocab_size:
            raise ValueError("share_embeddings needs one joint vocabulary (equal vocabulary sizes)")
        src_embedding = nn.Embedding(
            config.src_vocab_size, config.embedding_size, padding_idx=config.pad_id
        )
        tgt_embedding = (
            src_embedding
            if config.share_embeddings
            else nn.Embedding(
                config.tgt_vocab_size, config.embedding_size, padding_idx=config.pad_id
            )
        )
        dropouts = {
            "embedding_dropout": config.embedding_dropout,
            "dropout": config.dropout,
            "recurrent_dropout": config.recurrent_dropout,
        }
        self.encoder = Encoder(
            src_embedding,
            config.encoder_hidden_size,
            config.encoder_layers,
            config.cell_type,
            config.layer_norm,
            unk_id=config.unk_id,
            fused=config.fused_encoder,
            residual=config.residual,
            **dropouts,
        )
        self.decoder = Decoder(
            tgt_embedding,
            self.encoder.output_size,
            config.decoder_hidden_size,
            config.decoder_layers,
            config.attention_size,
            config.cell_type,
            config.layer_norm,
            tie_embeddings=config.tie_embeddings,
            unk_id=config.unk_id,
            residual=config.residual,
            **dropouts,
        )
        initialize(self, config.forget_bias, config.recurrent_init)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """src (B, S), src_lengths (B,) -> memory, mask and final states."""
        return self.encoder(src, src_lengths)

    def restrict_output(self, words: torch.Tensor) -> None:
        """Score only the target words where the (V,) bool mask `words` is True (those of the
        training targets, say): logits, log-probabilities and search then cover those alone."""
        self.decoder.restrict_output(words)

    def output_words(self) -> torch.Tensor:
        """(V',) sorted target ids the model scores: column i of the logits is the i-th."""
        return self.decoder.output_words()

    def output_positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Target `ids` (any shape) -> their columns in the logits; -1 for a word not scored."""
        return self.decoder.output_positions(ids)

    def target_columns(self, ids: torch.Tensor) -> torch.Tensor:
        """Reference target `ids` (any shape) -> the logits' columns a loss reads: a word the
        model does not score (one the training targets never held) counts as <unk>."""
        columns = self.output_positions(ids)
        unk = self.output_positions(torch.tensor(self.config.unk_id, device=ids.device))
        return torch.where(columns >= 0, columns, unk)

    def search_weights(self) -> SearchWeights:
        """What every search step reads, from the current parameters: build once per search
        (under the search's autocast, if any) and pass to `initial_state`."""
        return self.decoder.search_weights()

    def initial_state(
        self,
        encoded: EncoderOutput,
        search_weights: SearchWeights | None = None,
        vocabulary: tuple[torch.Tensor, torch.Tensor | None] | None = None,
        hypotheses: int = 1,
    ) -> DecoderState:
        """The decoder state before the first target token (see Decoder.initial_state); with a
        `vocabulary`, (V'',) sorted target ids among `output_words()` and (B, V'') which of them
        each sentence may not use (or None), a search over those words alone: its token ids are
        positions in them (SearchWeights.restricted). `hypotheses`: how many rows each sentence
        will have (the beam size); from two on, the context's projections are computed once
        per source position (Decoder.initial_state's `project_context`)."""
        project_context = hypotheses > 1
        if vocabulary is None:
            return self.decoder.initial_state(encoded, search_weights, None, project_context)
        words, outside = vocabulary
        columns = self.output_positions(words)  # (V'',)
        if bool((columns < 0).any()):
            raise ValueError("a search vocabulary may hold only words the model scores")
        if words.numel() < int(self.decoder.target_words.sum()):
            search_weights = (search_weights or self.search_weights()).restricted(columns)
        return self.decoder.initial_state(encoded, search_weights, outside, project_context)

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        positions: torch.Tensor | None = None,
        rows_multiple: int = 1,
    ) -> torch.Tensor:
        """Teacher forcing: (B, S), (B,), (B, T) -> logits (B, T, V'), or (N', V') at the N True
        target `positions` (B, T) only, zero-padded to a multiple of `rows_multiple` rows (see
        Decoder.forward)."""
        state = self.decoder.initial_state(self.encode(src, src_lengths))
        return self.decoder(state, tgt_in, positions, rows_multiple)

    def step(self, state: DecoderState, tokens: torch.Tensor) -> StepOutput:
        """The search API: previous tokens (B,) -> log-probabilities (B, V'), state, attention;
        token ids and columns are positions in `output_words()` (or in the vocabulary the state
        was started with: `initial_state`)."""
        logits, state, attention = self.decoder.step(state, tokens)  # (B, V'' >= V')
        # at least fp32 under autocast too: beam scores add up over the whole output
        dtype = torch.promote_types(logits.dtype, torch.float32)
        if logits.dtype == dtype and not logits.requires_grad:
            # in place: a fresh (B, V) tensor every step would cost its page faults
            log_probs = torch.log_softmax(logits, dim=-1, out=logits)
        else:
            log_probs = torch.log_softmax(logits, dim=-1, dtype=dtype)
        # the output layer's aligned rows (SearchWeights) past the words: -inf logits, left out
        # after the log-softmax, which runs faster over whole rows than over a strided view
        words = logits.shape[-1] if state.search_weights is None else state.search_weights.words
        return StepOutput(log_probs[:, :words], state, attention)
