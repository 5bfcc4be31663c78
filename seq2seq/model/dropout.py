"""Variational dropout (Gal & Ghahramani, 2016): one mask per sequence, reused at every step.

Standard dropout samples a new mask at every time step, which on the recurrent connection
injects noise that compounds over the sequence. Gal & Ghahramani's Bayesian reading of dropout
asks for the same weights at every step, hence the same mask: sampled once per sequence and
layer, broadcast over time on inputs and outputs, and applied to h(t-1) at every step of the
recurrence. Embedding dropout drops whole word types per sequence (their section 4): every
occurrence of a dropped word in that sentence becomes <unk>.

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
    tokens: torch.Tensor, vocab_size: int, rate: float, training: bool, unk_id: int
) -> torch.Tensor:
    """Replace every occurrence of randomly dropped word types in a sentence by `unk_id`.

    tokens (B, T) -> (B, T). The same types are dropped throughout a sentence (one mask per
    sequence). Dropped words become the learned <unk> embedding rather than a zero vector: a
    zero input with a zero initial state makes the first cell state exactly zero, and layer
    normalization of a zero vector has gradient 1/sqrt(eps), which compounded through the
    layer-normalized steps to gradient norms of 1e9 at initialization.
    """
    if not training or rate == 0.0:
        return tokens
    dropped = torch.rand(tokens.shape[0], vocab_size, device=tokens.device) < rate  # (B, V)
    return tokens.masked_fill(dropped.gather(1, tokens), unk_id)
