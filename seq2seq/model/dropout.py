"""Variational dropout (Gal & Ghahramani, 2016): one mask per sequence, reused at every step.

Standard dropout samples a new mask at every time step, which on the recurrent connection
injects noise that compounds over the sequence. Gal & Ghahramani's Bayesian reading of dropout
asks for the same weights at every step, hence the same mask: sampled once per sequence and
layer, broadcast over time on inputs and outputs, and applied to h(t-1) at every step of the
recurrence. Embedding dropout drops whole word types per sequence (their section 4): every
occurrence of a dropped word in that sentence is zeroed.

Shapes: B batch, T time, F features, V vocabulary.
"""

from __future__ import annotations

import torch


def sequence_mask(
    shape: tuple[int, ...], rate: float, like: torch.Tensor, training: bool
) -> torch.Tensor | None:
    """A mask of 0 and 1 / (1 - rate) of `shape` (one row per sequence), or None (keep all)."""
    if not training or rate == 0.0:
        return None
    keep = 1.0 - rate
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(keep).div_(keep)


def apply_over_time(inputs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, F) inputs times a (B, F) mask, the same at every step."""
    return inputs if mask is None else inputs * mask.unsqueeze(1)


def variational_dropout(inputs: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Dropout on (B, T, F) with one mask per sequence, broadcast over T."""
    mask = sequence_mask((inputs.shape[0], inputs.shape[-1]), rate, inputs, training)
    return apply_over_time(inputs, mask)


def word_dropout(
    embedded: torch.Tensor, tokens: torch.Tensor, vocab_size: int, rate: float, training: bool
) -> torch.Tensor:
    """Zero every occurrence of randomly dropped word types: (B, T, F) embeddings of (B, T) ids."""
    word_mask = sequence_mask((tokens.shape[0], vocab_size), rate, embedded, training)  # (B, V)
    if word_mask is None:
        return embedded
    return embedded * word_mask.gather(1, tokens).unsqueeze(-1)  # (B, T, F)
