"""Label-smoothed cross-entropy with a hand-written backward pass.

Shapes: N target positions (padding already left out), V vocabulary; N' >= N logits rows, of
which the rows past N are shape-bucketing padding (see Decoder.forward): no loss, zero gradient.

With log-probabilities l = log_softmax(z) of the logits z and smoothing eps, a position's loss and
its gradient are

    loss     = (1 - eps) * -l(y) + eps * mean_v -l(v)
    dloss/dz = softmax(z) - (1 - eps) * onehot(y) - eps / V

Autograd of the first line builds the second from four (N, V) tensors (the gather's zero-filled
scatter, the mean's expanded division, their sum, log_softmax's backward), each freshly allocated
and written in full, a large share of a training step at the reference batch (2,400 positions x
8,000 words). Here the backward turns the saved
log-probabilities into the gradient in place: one exp, one multiply-add and a scatter of N values.
The price: the graph through the loss can be walked backward once (a second walk raises
autograd's in-place error instead of returning a wrong gradient).
"""

from __future__ import annotations

import torch
from torch import nn


def label_smoothed_loss(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean label-smoothed loss and mean NLL (for perplexity, detached) per token, and N.

    logits (N', V), target (N,) ids: the first N rows are the targets' logits, any further rows
    padding; equals F.cross_entropy(logits[:N], target, label_smoothing=smoothing).
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)  # bf16/fp16 logits: in fp32
    losses, nll = _SmoothedCrossEntropy.apply(logits.to(dtype), target, smoothing)  # (N,), (N,)
    tokens = target.numel()
    return losses.sum() / tokens, nll.sum() / tokens, tokens


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, target: torch.Tensor, smoothing: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs = torch.log_softmax(logits, dim=-1)  # (N', V)
        real = log_probs[: target.shape[0]]  # (N, V)
        nll = -real.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
        uniform = -real.mean(dim=-1)  # (N,)
        ctx.save_for_backward(log_probs, target)
        ctx.smoothing = smoothing
        ctx.mark_non_differentiable(nll)
        return torch.lerp(nll, uniform, smoothing), nll

    @staticmethod
    def backward(
        ctx, grad_losses: torch.Tensor, _: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        log_probs, target = ctx.saved_tensors
        smoothing, vocab_size = ctx.smoothing, log_probs.shape[-1]
        padding = log_probs.shape[0] - target.shape[0]
        scale = nn.functional.pad(grad_losses, (0, padding)).unsqueeze(1)  # (N', 1), padding 0
        probs = log_probs.exp_()  # (N', V), in place: nothing else reads the log-probabilities
        grad = torch.addcmul(scale * (-smoothing / vocab_size), probs, scale, out=probs)
        real = scale[: target.shape[0]]  # (N, 1)
        grad[: target.shape[0]].scatter_add_(1, target.unsqueeze(1), real * -(1.0 - smoothing))
        return grad, None, None
