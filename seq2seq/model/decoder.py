"""Decoder with Bahdanau attention: teacher-forced forward for training, `step` for search.

Shapes: B batch, S source length, T target length, E embedding size, H decoder hidden size,
M memory size (2 x encoder hidden), A attention size, V vocabulary, L decoder layers, V' <= V
the target words the output layer scores (`restrict_output`): logits' columns and search's token
ids are positions in `output_words()`.

At step i the attention reads the memory with the previous top state s(i-1) (Bahdanau et al.,
2015); the first layer is fed [y(i-1); c(i)], higher layers the state below; the output is
a "deep output" (their eq. A.1.2, tanh instead of maxout): tanh(W [s(i); c(i); y(i-1)]) projected
to the vocabulary, optionally with the target embedding matrix (Press & Wolf, 2017).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from seq2seq.model.attention import BahdanauAttention, padding_bias
from seq2seq.model.autocast import cast_once
from seq2seq.model.cells import CellType, make_cell
from seq2seq.model.dropout import sequence_mask, variational_dropout, word_dropout
from seq2seq.model.encoder import EncoderOutput


class StepWeights(NamedTuple):
    """What a decoder step multiplies by, sliced and (under autocast) cast once per pass."""

    input: list[torch.Tensor]  # Decoder._input_weights()
    recurrent: list[torch.Tensor]  # L x (1, H, G*H), RecurrentCell.recurrent_weight()


class SearchWeights(NamedTuple):
    """What every search step reads, built once from the current parameters by whoever owns
    the search (`Decoder.search_weights`) and passed in with the initial state. Row v of the
    per-word tables is the step's token id v: the v-th of the decoder's output words, or of a
    shortlist's (`restricted`).

    The output layer's tables may hold rows past the V' words (`aligned_output_rows`): their
    logits are -inf and the step's log-probabilities leave them out (`Seq2Seq.step`)."""

    embedding_projections: torch.Tensor  # (V', G*H) first layer's input projection of each word
    step: StepWeights
    embeddings: torch.Tensor  # (V', E) each word's target embedding, unscaled
    output_weight: torch.Tensor  # (V'', E) the output layer's row of each word, V'' >= V'
    output_bias: torch.Tensor  # (V'',) -inf past the V' words

    @property
    def words(self) -> int:
        """V', the words a step scores: the columns of its log-probabilities."""
        return self.embeddings.shape[0]

    def restricted(self, vocabulary: torch.Tensor) -> SearchWeights:
        """The weights of a search over `vocabulary` (V'',) rows of these alone: its steps read
        and score those words only, token id i standing for row vocabulary[i], and their
        log-softmax normalizes over them."""
        output_weight, output_bias = aligned_output_rows(
            self.output_weight.index_select(0, vocabulary),
            self.output_bias.index_select(0, vocabulary),
        )
        return self._replace(
            embedding_projections=self.embedding_projections.index_select(0, vocabulary),
            embeddings=self.embeddings.index_select(0, vocabulary),
            output_weight=output_weight,
            output_bias=output_bias,
        )


OUTPUT_ROWS_MULTIPLE = 16  # 64 bytes of fp32 logits: a cache line


def aligned_output_rows(
    weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The output layer's (V', E) weight and (V',) bias with zero rows and -inf biases appended
    up to a multiple of OUTPUT_ROWS_MULTIPLE rows, so that each row of the step's logits starts
    on a cache line. On an AMD EPYC, MKL's fp32 GEMM writing rows of 3,851 logits (the
    reference config's scored words) ran up to 1.57x slower than writing rows of 3,856, the
    more rows the slower (docs/performance.md); the real columns are the same either way."""
    extra = -weight.shape[0] % OUTPUT_ROWS_MULTIPLE
    if extra == 0:
        return weight, bias
    weight = nn.functional.pad(weight, (0, 0, 0, extra))
    return weight, nn.functional.pad(bias, (0, extra), value=float("-inf"))


@dataclass
class DecoderState:
    """Everything a decoding step needs.

    The recurrent state has a row per hypothesis, the encoder side a row per sentence: the K
    hypotheses (beams) of a sentence are adjacent rows, K = hypotheses / sentences, so beams
    share their sentence's memory instead of copying it.
    """

    hidden: tuple[torch.Tensor, ...]  # L x (1, B*K, H)
    cell: tuple[torch.Tensor, ...]  # L x (1, B*K, H); empty unless LSTM
    memory: torch.Tensor  # (B, S, M)
    keys: torch.Tensor  # (B, S, A) projected once per sentence
    padding_bias: torch.Tensor  # (B, S) 0 at tokens, -inf at padding
    search_weights: SearchWeights | None = None  # in search; else steps read the parameters
    outside: torch.Tensor | None = None  # (B, V') words a sentence may not use (a shortlist)
    # (B, S, G*H + E) when projected once per source position (Decoder.initial_state's
    # `project_context`): what each position's memory adds to the first layer's input
    # projection and to the deep output, which a step's attention weights then mix
    context_projections: torch.Tensor | None = None

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> DecoderState:
        """Hypotheses `rows` (R',) - beam expansion, pruning, reordering - and, where sentences
        leave, the sentences `sentences` (B',) whose memory stays."""
        hidden = tuple(h.index_select(1, rows) for h in self.hidden)
        cell = tuple(c.index_select(1, rows) for c in self.cell)
        if sentences is None:
            return replace(self, hidden=hidden, cell=cell)
        return replace(
            self,
            hidden=hidden,
            cell=cell,
            memory=self.memory.index_select(0, sentences),
            keys=self.keys.index_select(0, sentences),
            padding_bias=self.padding_bias.index_select(0, sentences),
            outside=_selected(self.outside, sentences),
            context_projections=_selected(self.context_projections, sentences),
        )


@dataclass
class _StepMasks:
    """Variational dropout masks, sampled once per sequence for a whole teacher-forced pass."""

    recurrent: list[torch.Tensor | None]  # L x (1, B, H)
    between_layers: list[torch.Tensor | None]  # (L - 1) x (B, H)


class Decoder(nn.Module):
    """Bahdanau attention over the encoder's memory, a stack of recurrent cells, a deep output
    layer; `forward` teacher-forces a whole target, `step` advances search by one token."""

    def __init__(
        self,
        embedding: nn.Embedding,
        memory_size: int,
        hidden_size: int,
        num_layers: int,
        attention_size: int,
        cell_type: CellType,
        layer_norm: bool,
        embedding_dropout: float,
        dropout: float,
        recurrent_dropout: float,
        tie_embeddings: bool,
        unk_id: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.embedding = embedding
        self.embedding_scale = embedding.embedding_dim**0.5  # see initialization.py
        self.unk_id = unk_id
        embedding_size, vocab_size = embedding.embedding_dim, embedding.num_embeddings
        self.embedding_dropout = embedding_dropout
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.hidden_size = hidden_size
        self.attention = BahdanauAttention(hidden_size, memory_size, attention_size)
        input_sizes = [embedding_size + memory_size] + [hidden_size] * (num_layers - 1)
        self.cells = nn.ModuleList(
            make_cell(cell_type, size, hidden_size, 1, layer_norm) for size in input_sizes
        )
        self.bridge = nn.Linear(memory_size, num_layers * hidden_size)
        self.pre_output = nn.Linear(hidden_size + memory_size + embedding_size, embedding_size)
        self.output = nn.Linear(embedding_size, vocab_size)
        if tie_embeddings:
            self.output.weight = embedding.weight
        # (V,) True for the target words the output layer scores (`restrict_output`)
        self.register_buffer("target_words", torch.ones(vocab_size, dtype=torch.bool))

    def restrict_output(self, words: torch.Tensor) -> None:
        """Score only the target words where the (V,) bool `words` is True: a word the training
        targets never hold only ever learns to be improbable, and its output row costs a
        training step as much as any other's."""
        if words.shape != self.target_words.shape or words.dtype != torch.bool:
            raise ValueError(f"output words must be a ({self.target_words.numel()},) bool mask")
        if not bool(words[self.unk_id]):
            raise ValueError("the output words must include <unk> (unscored words count as it)")
        self.target_words.copy_(words)

    def output_words(self) -> torch.Tensor:
        """(V',) the sorted target ids the output layer scores: column i of the logits (and
        token id i in search) is output_words()[i]."""
        return self.target_words.nonzero().squeeze(1)

    def output_positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Target `ids` (any shape) -> their columns in the logits; -1 for a word not scored."""
        columns = self.target_words.cumsum(0) - 1  # (V,)
        return torch.where(self.target_words[ids], columns[ids], -1)

    def initial_state(
        self,
        encoded: EncoderOutput,
        search_weights: SearchWeights | None = None,
        outside: torch.Tensor | None = None,
        project_context: bool = False,
    ) -> DecoderState:
        """s(0) = tanh(W [h_fwd(last); h_bwd(first)]) for every layer, cells at zero. A search
        passes the `search_weights` it built when it started; without them (teacher forcing,
        gradient probes) every step computes from the parameters. `outside` (B, V'): the words
        of the search weights' vocabulary each sentence may not use (their logits are -inf).

        `project_context`: the context vector enters the step only through two linear maps
        (the first layer's input projection and the deep output), and it is a weighted mean
        of the memory, so each source position's memory is projected once here and a step
        mixes the projections with its attention weights: B*S rows of that GEMM for the whole
        search instead of one row per hypothesis and step, fewer when a sentence has several
        hypotheses (beams); with one a sentence, about as many and a wider mix."""
        batch = encoded.memory.shape[0]
        bridged = torch.tanh(self.bridge(encoded.final_hidden))  # (B, L*H)
        hidden = tuple(bridged.view(batch, len(self.cells), -1).transpose(0, 1).unsqueeze(1))
        cell = tuple(torch.zeros_like(h) for h in hidden) if self.cells[0].has_cell_state else ()
        memory = cast_once(encoded.memory)  # read at every step: cast once (autocast.py)
        projections = memory @ self._context_weight().t() if project_context else None
        return DecoderState(
            hidden=hidden,
            cell=cell,
            memory=memory,
            keys=self.attention.project_memory(encoded.memory),
            padding_bias=padding_bias(encoded.src_mask, encoded.memory.dtype),
            search_weights=search_weights,
            outside=outside,
            context_projections=projections,  # (B, S, G*H + E) or None
        )

    def _context_weight(self) -> torch.Tensor:
        """(G*H + E, M): the first layer's input weight of c(i), then the deep output's."""
        memory_size = self.attention.key_projection.in_features
        deep_output = self.pre_output.weight[:, self.hidden_size : self.hidden_size + memory_size]
        return torch.cat((self._input_weights()[1], cast_once(deep_output)))

    @torch.no_grad()
    def search_weights(self) -> SearchWeights:
        """The step weights, the scored words' rows, and the first layer's input projection of
        each of them, (V', G*H): a row gather per step instead of a GEMM. Building the table
        costs V' x E x G*H multiply-adds, about what V' one-row decoder steps spend on the
        projection, so a search builds it once when it starts (under autocast: in autocast's
        dtype), and a model whose weights change needs a new one. The output layer's rows are
        aligned (`aligned_output_rows`)."""
        weights = self.step_weights()
        embeddings, output_weight, output_bias = self._scored_rows(
            self.embedding.weight, self.output.weight, self.output.bias
        )  # (V', E), (V', E), (V',)
        table = (embeddings * self.embedding_scale) @ weights.input[0].t()  # (V', G*H)
        output_weight, output_bias = aligned_output_rows(
            cast_once(output_weight), cast_once(output_bias)
        )  # (V'', E), (V'',)
        return SearchWeights(table, weights, embeddings, output_weight, output_bias)

    def forward(
        self,
        state: DecoderState,
        tgt_in: torch.Tensor,
        positions: torch.Tensor | None = None,
        rows_multiple: int = 1,
    ) -> torch.Tensor:
        """Teacher forcing: tgt_in (B, T) ids -> logits (B, T, V'), or (N', V') at the N True
        `positions` (B, T) only (the loss skips padding: no output layer work for it), N' = N
        rounded up to `rows_multiple` with zero rows: shape bucketing, so that the output
        layer's GEMMs see a few recurring row counts instead of a new one every batch (bf16
        on the CPU builds a oneDNN primitive per new shape)."""
        embedded = self._embed(tgt_in)  # (B, T, E)
        weights = self.step_weights()
        embedding_projection = embedded @ weights.input[0].t()  # (B, T, G*H), hoisted
        masks = self._masks(tgt_in.shape[0], embedded)
        paired = _paired_weights(weights)  # (2, M, G*H) or None
        tops, contexts = [], []
        # unbind once, weights sliced once: indexing inside the loop would make backward
        # zero-fill a full-size gradient at every step
        for step_projection in embedding_projection.unbind(1):
            context, _ = self._attend(state, state.memory)
            if paired is None:
                first_input = step_projection + context @ weights.input[1].t()  # (B, G*H)
                recurrent = None
            else:  # c(i) and s(i-1) times their weights in one product
                hidden = _masked(state.hidden[0], masks.recurrent[0])[0]  # (B, H)
                products = torch.bmm(torch.stack((context, hidden)), paired)  # (2, B, G*H)
                first_input, recurrent = step_projection + products[0], products[1:]
            state, top = self._advance(state, first_input, weights, masks, recurrent)
            tops.append(top)
            contexts.append(context)
        top, context = torch.stack(tops, 1), torch.stack(contexts, 1)  # (B, T, H), (B, T, M)
        output_mask = self._output_mask(embedded)  # (B, 1, E)
        if positions is not None:
            selected = (values[positions] for values in (top, context, embedded))
            top, context, embedded = (_padded_rows(v, rows_multiple) for v in selected)  # (N', *)
            if output_mask is not None:  # each position keeps its sentence's mask
                output_mask = output_mask.expand(-1, positions.shape[1], -1)[positions]  # (N, E)
                output_mask = _padded_rows(output_mask, rows_multiple)
        return self._logits(top, context, embedded, output_mask)

    def step(
        self, state: DecoderState, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One step from previous tokens (B,): logits (B, V'), next state, attention (B, S).
        Token ids and columns are positions in `output_words()`; in search
        (state.search_weights), in the search weights' vocabulary (SearchWeights.restricted),
        and the logits are (B, V''): a column per row of its output layer, -inf past its V'
        words (`aligned_output_rows`)."""
        search = state.search_weights
        if search is None:
            embedded = self._embed(self.output_words()[tokens].unsqueeze(1))[:, 0]  # (B, E)
            weights = self.step_weights()
            projection = embedded @ weights.input[0].t()  # (B, G*H)
            output = self._scored_rows(self.output.weight, self.output.bias)
        else:  # search (in eval mode): rows of per-word tables instead of GEMMs
            embedded = search.embeddings.index_select(0, tokens) * self.embedding_scale
            weights = search.step
            projection = search.embedding_projections.index_select(0, tokens)
            output = (search.output_weight, search.output_bias)
        if state.context_projections is None:
            context, attention = self._attend(state, state.memory)  # (B, M), (B, S)
            first_input = projection + context @ weights.input[1].t()  # (B, G*H)
        else:
            mixed, attention = self._attend(state, state.context_projections)  # (B, G*H + E)
            # the gates' share (B, G*H), and `context` becomes the deep output's share (B, E)
            first_input, context = mixed.split((projection.shape[-1], embedded.shape[-1]), -1)
            first_input = first_input + projection
        no_dropout = _StepMasks([None] * len(self.cells), [None] * (len(self.cells) - 1))
        state, top = self._advance(state, first_input, weights, no_dropout)
        if state.context_projections is None:
            pre_output = self.pre_output(torch.cat((top, context, embedded), dim=-1))
        else:
            pre_output = self._projected_pre_output(top, context, embedded)
        output_mask = sequence_mask(embedded.shape, self.dropout, embedded, self.training)
        logits = nn.functional.linear(_masked(torch.tanh(pre_output), output_mask), *output)
        if state.outside is not None:  # each sentence's K = B / sentences adjacent rows
            by_sentence = logits.view(state.outside.shape[0], -1, logits.shape[-1])
            words = by_sentence[..., : state.outside.shape[-1]]  # (sentences, K, V')
            words.masked_fill_(state.outside.unsqueeze(1), float("-inf"))
        return logits, state, attention

    def _projected_pre_output(
        self, top: torch.Tensor, projected_context: torch.Tensor, embedded: torch.Tensor
    ) -> torch.Tensor:
        """The deep output's pre-activation (B, E) from s(i) (B, H), its context's share already
        projected (B, E) and y(i-1) (B, E): `pre_output` without the context's columns."""
        weight = cast_once(self.pre_output.weight)  # (E, H + M + E)
        from_state = torch.addmm(self.pre_output.bias, top, weight[:, : self.hidden_size].t())
        from_word = embedded @ weight[:, -embedded.shape[-1] :].t()
        return from_state + from_word + projected_context

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        vocab_size = self.embedding.num_embeddings
        kept = word_dropout(tokens, vocab_size, self.embedding_dropout, self.training, self.unk_id)
        embedded = self.embedding(kept) * self.embedding_scale  # (B, T, E), unit variance
        return variational_dropout(embedded, self.dropout, self.training)

    def _input_weights(self) -> list[torch.Tensor]:
        """Input weights sliced (and under autocast cast) once per pass: first layer's for
        y(i-1) (G*H, E) and for c(i) (G*H, M), then each higher layer's (G*H, H)."""
        first = self.cells[0].weight_ih[0]  # (G*H, E + M)
        embedding_size = self.embedding.embedding_dim
        higher = [cell.weight_ih[0] for cell in self.cells[1:]]
        sliced = [first[:, :embedding_size], first[:, embedding_size:], *higher]
        return [cast_once(weight) for weight in sliced]

    def step_weights(self) -> StepWeights:
        """The weights a step multiplies by, from the current parameters (`StepWeights`)."""
        return StepWeights(self._input_weights(), [cell.recurrent_weight() for cell in self.cells])

    def _attend(
        self, state: DecoderState, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention of s(i-1) over the memory: (B*K, X) mean of the (B, S, X) `values`
        (the memory, or its context projections) and the weights (B*K, S)."""
        query = state.hidden[-1][0]  # (B*K, H): s(i-1)
        return self.attention(query, state.keys, values, state.padding_bias)

    def _masks(self, batch: int, like: torch.Tensor) -> _StepMasks:
        size, layers = self.hidden_size, len(self.cells)
        return _StepMasks(
            recurrent=[
                sequence_mask((1, batch, size), self.recurrent_dropout, like, self.training)
                for _ in range(layers)
            ],
            between_layers=[
                sequence_mask((batch, size), self.dropout, like, self.training)
                for _ in range(layers - 1)
            ],
        )

    def _advance(
        self,
        state: DecoderState,
        projection: torch.Tensor,
        weights: StepWeights,
        masks: _StepMasks,
        first_recurrent: torch.Tensor | None = None,
    ) -> tuple[DecoderState, torch.Tensor]:
        """Run every layer one step: the first layer's input projection (B, G*H), of [y(i-1);
        c(i)], -> the next state and the top layer's output (B, H) (its state, plus its input
        with `residual`). `first_recurrent` (1, B, G*H): the first layer's U s(i-1), when the
        caller computed it (RecurrentCell.step)."""
        hidden, cell = [], []
        output = None
        for layer, module in enumerate(self.cells):
            if layer > 0:
                layer_input = _masked(output, masks.between_layers[layer - 1])
                projection = layer_input @ weights.input[layer + 1].t()  # (B, G*H)
            previous_cell = state.cell[layer] if state.cell else None
            new_hidden, new_cell = module.step(
                module.input_gates(projection.unsqueeze(0)),
                state.hidden[layer],
                previous_cell,
                masks.recurrent[layer],
                weights.recurrent[layer],
                first_recurrent if layer == 0 else None,
            )
            hidden.append(new_hidden)
            if new_cell is not None:
                cell.append(new_cell)
            output = new_hidden[0]  # (B, H)
            if self.residual and layer > 0:
                output = output + layer_input
        return replace(state, hidden=tuple(hidden), cell=tuple(cell)), output

    def _output_mask(self, embedded: torch.Tensor) -> torch.Tensor | None:
        """Variational dropout mask (B, 1, E) of the deep output, one per sentence."""
        shape = (embedded.shape[0], 1, embedded.shape[-1])
        return sequence_mask(shape, self.dropout, embedded, self.training)

    def _logits(
        self,
        top: torch.Tensor,
        context: torch.Tensor,
        embedded: torch.Tensor,
        output_mask: torch.Tensor | None,
        output: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(*, H), (*, M), (*, E) and a mask broadcastable to (*, E) -> (*, V'), all steps in
        one GEMM; `output`: the output layer's (V', E) weight and (V',) bias, if not its own
        rows of the scored words."""
        pre_output = torch.tanh(self.pre_output(torch.cat((top, context, embedded), dim=-1)))
        weight, bias = output or self._scored_rows(self.output.weight, self.output.bias)
        return nn.functional.linear(_masked(pre_output, output_mask), weight, bias)

    def _scored_rows(self, *per_word: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(V, *) tables -> their (V', *) rows of the scored words (all: the tables as they are)."""
        words = self.output_words()
        if words.numel() == self.target_words.numel():
            return per_word
        return tuple(table.index_select(0, words) for table in per_word)


def padded_count(count: int, multiple: int) -> int:
    """`count` rounded up to a multiple of `multiple`: the output layer's rows in training."""
    return -(-count // multiple) * multiple


def _padded_rows(values: torch.Tensor, multiple: int) -> torch.Tensor:
    """(N, X) -> (N', X): zero rows appended up to N' = padded_count(N, multiple)."""
    extra = padded_count(values.shape[0], multiple) - values.shape[0]
    return nn.functional.pad(values, (0, 0, 0, extra)) if extra else values


def _paired_weights(weights: StepWeights) -> torch.Tensor | None:
    """(2, M, G*H): the first layer's input weight of c(i) and its recurrent weight, stacked
    once per pass so that a teacher-forced step multiplies c(i) and s(i-1) in one batched
    product instead of two: half the GEMM calls forward and backward, 1-3.5% of a training
    step on 2 CPU cores (docs/performance.md). None unless M = H, which stacking needs."""
    context_weight, recurrent_weight = weights.input[1].t(), weights.recurrent[0][0]
    if context_weight.shape != recurrent_weight.shape:
        return None
    return torch.stack((context_weight, recurrent_weight))


def _selected(rows: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    """rows[index] along the first dimension, or None without rows."""
    return None if rows is None else rows.index_select(0, index)


def _masked(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return values if mask is None else values * mask
