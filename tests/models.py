"""Tiny models and source batches shared by the model, decoding and gradient tests."""

from __future__ import annotations

import torch

from seq2seq.decoding.search import SearchOptions
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig

TINY_SIZES = {
    "embedding_size": 8,
    "encoder_hidden_size": 8,
    "decoder_hidden_size": 8,
    "attention_size": 8,
}
SMALL_SIZES = {
    "embedding_size": 16,
    "encoder_hidden_size": 12,
    "decoder_hidden_size": 20,
    "attention_size": 10,
}
# greedy, beam and sampling (n-best, seeded): what a search-equivalence test runs each of
EVERY_STRATEGY = [
    SearchOptions(strategy="greedy"),
    SearchOptions(beam_size=3, nbest=2),
    SearchOptions(strategy="sample", nbest=3, seed=4),
]
TINY_ARCHITECTURE = Seq2SeqConfig(src_vocab_size=30, tgt_vocab_size=30, **TINY_SIZES)


def tiny_model(seed: int = 0, vocab: int = 30, **overrides: object) -> Seq2Seq:
    """A model small enough to build in milliseconds, in eval mode (no dropout)."""
    torch.manual_seed(seed)
    sizes = {**TINY_SIZES, **overrides}
    return Seq2Seq(Seq2SeqConfig(src_vocab_size=vocab, tgt_vocab_size=vocab, **sizes)).eval()


def small_model(**overrides: object) -> Seq2Seq:
    """A float64 model with distinct sizes everywhere (source vocabulary 50, target 60), so
    that a mixed-up dimension fails loudly; in train mode."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(src_vocab_size=50, tgt_vocab_size=60, **{**SMALL_SIZES, **overrides})
    return Seq2Seq(config).double()


def source_batch(
    lengths: list[int], vocab: int = 50, seed: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S) random source ids (padding 0 after each length) and their (B,) lengths."""
    torch.manual_seed(seed)
    lengths_tensor = torch.tensor(lengths)
    src = torch.randint(4, vocab, (len(lengths), max(lengths)))
    src[torch.arange(max(lengths)) >= lengths_tensor.unsqueeze(1)] = 0
    return src, lengths_tensor


def renormalized(model: Seq2Seq, allowed: list[int]):
    """`model` whose step scores only the `allowed` words, normalized over them, in full
    (R, V) log-probabilities: what a search over those words must find."""
    inside = torch.zeros(model.config.tgt_vocab_size, dtype=torch.bool)
    inside[allowed] = True

    class Restricted:
        encode, initial_state, output_words = model.encode, model.initial_state, model.output_words

        def step(self, state, tokens):
            log_probs, state, attention = model.step(state, tokens)
            masked = log_probs.masked_fill(~inside, float("-inf"))
            return masked.log_softmax(dim=-1), state, attention

    return Restricted()
