"""Bahdanau additive attention (Bahdanau, Cho & Bengio, 2015, appendix A.1.2).

    e(i, j) = v^T tanh(W s(i-1) + U h(j))        alpha(i, j) = softmax_j e(i, j)
    c(i)    = sum_j alpha(i, j) h(j)

U h(j) depends only on the source, so it is computed once per sentence (`project_memory`) and
passed in at every decoder step; the module keeps no state between calls.

Shapes: B batch, S source length, M memory size, Q query size, A attention size.
"""

from __future__ import annotations

import torch
from torch import nn


class BahdanauAttention(nn.Module):
    def __init__(self, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        self.key_projection = nn.Linear(memory_size, attention_size, bias=False)  # U
        self.query_projection = nn.Linear(query_size, attention_size)  # W (+ bias)
        self.score = nn.Linear(attention_size, 1, bias=False)  # v

    def project_memory(self, memory: torch.Tensor) -> torch.Tensor:
        """U h(j) for every source position: (B, S, M) -> (B, S, A), once per sentence."""
        return self.key_projection(memory)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        memory: torch.Tensor,
        padding_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (B, M) and weights (B, S) for queries (B, Q) over keys (B, S, A) of memory.

        `padding_bias` (B, S) is 0 at real tokens and -inf at padding (`padding_bias()`).
        """
        energy = torch.tanh(keys + self.query_projection(query).unsqueeze(1))  # (B, S, A)
        scores = self.score(energy).squeeze(-1) + padding_bias  # (B, S)
        weights = torch.softmax(scores, dim=-1)  # (B, S), exactly 0 on padding
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, M)
        return context, weights


def padding_bias(src_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) additive mask from a boolean (B, S) mask of real tokens: 0 where real, -inf else."""
    bias = torch.zeros(src_mask.shape, dtype=dtype, device=src_mask.device)
    return bias.masked_fill_(~src_mask, float("-inf"))
