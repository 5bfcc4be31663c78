"""Label-smoothed cross-entropy with a hand-written backward pass.

Shapes: N target positions (padding already left out), V vocabulary.

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


def label_smoothed_loss(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean label-smoothed loss and mean NLL (for perplexity, detached) per token, and N.

    logits (N, V), target (N,) ids; equals F.cross_entropy(..., label_smoothing=smoothing).
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
        log_probs = torch.log_softmax(logits, dim=-1)  # (N, V)
        nll = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
        uniform = -log_probs.mean(dim=-1)  # (N,)
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
        scale = grad_losses.unsqueeze(1)  # (N, 1)
        probs = log_probs.exp_()  # (N, V), in place: nothing else reads the log-probabilities
        grad = torch.addcmul(scale * (-smoothing / vocab_size), probs, scale, out=probs)
        grad.scatter_add_(1, target.unsqueeze(1), scale * -(1.0 - smoothing))  # (N, V)
        return grad, None, None
