"""Bahdanau additive attention (Bahdanau, Cho & Bengio, 2015, appendix A.1.2).

    e(i, j) = v^T tanh(W s(i-1) + U h(j))        alpha(i, j) = softmax_j e(i, j)
    c(i)    = sum_j alpha(i, j) h(j)

U h(j) depends only on the source, so it is computed once per sentence (`project_memory`) and
passed in at every decoder step; the module keeps no state between calls.

The energies are computed through the logistic sigmoid: tanh(x) = 2 sigmoid(2x) - 1, and a
softmax does not change when every score gets the same constant, here -sum(v), so

    alpha(i, j) = softmax_j 2 v^T sigmoid(2 W s(i-1) + 2 U h(j))

are the same weights. On the CPU, torch's sigmoid runs about 3.5x faster than its tanh (fp32,
AVX2), and the energies, (B, K, S, A) at every decoder step, are the largest elementwise
work of search. The factors 2 ride on the projections: the keys hold 2 U h(j).

Shapes: B batch, K queries per sentence, S source length, M memory size, Q query size,
A attention size.
"""

from __future__ import annotations

import torch
from torch import nn


class BahdanauAttention(nn.Module):
    """Additive attention of decoder states over the encoder's memory."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        self.key_projection = nn.Linear(memory_size, attention_size, bias=False)  # U
        self.query_projection = nn.Linear(query_size, attention_size)  # W (+ bias)
        self.score = nn.Linear(attention_size, 1, bias=False)  # v

    def project_memory(self, memory: torch.Tensor) -> torch.Tensor:
        """2 U h(j) for every source position: (B, S, M) -> (B, S, A), once per sentence."""
        return nn.functional.linear(memory, 2 * self.key_projection.weight)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        memory: torch.Tensor,
        padding_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (B*K, M) and weights (B*K, S) for queries (B*K, Q) over keys (B, S, A) of
        memory (B, S, M): K queries per sentence (beams; 1 in training and greedy search) read
        their sentence's memory, which is stored once. Any per-position values may stand in
        for the memory (its projections, Decoder.initial_state): the context is their mean
        under the weights.

        `padding_bias` (B, S) is 0 at real tokens and -inf at padding (`padding_bias()`).
        """
        batch, source, _ = keys.shape
        projection = self.query_projection
        queries = torch.addmm(projection.bias, query, projection.weight.t(), beta=2, alpha=2)
        queries = queries.view(batch, -1, 1, keys.shape[-1])  # (B, K, 1, A): 2 (W s + b)
        energy = torch.sigmoid(keys.unsqueeze(1) + queries)  # (B, K, S, A): (tanh + 1) / 2
        scores = nn.functional.linear(energy, 2 * self.score.weight).squeeze(-1)  # (B, K, S)
        scores = scores + padding_bias.unsqueeze(1)
        weights = torch.softmax(scores, dim=-1)  # (B, K, S), exactly 0 on padding
        context = torch.bmm(weights, memory)  # (B, K, M)
        return context.view(query.shape[0], -1), weights.view(query.shape[0], source)


def padding_bias(src_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) additive mask from a boolean (B, S) mask of real tokens: 0 where real, -inf else."""
    bias = torch.zeros(src_mask.shape, dtype=dtype, device=src_mask.device)
    return bias.masked_fill_(~src_mask, float("-inf"))
