import pytest
import torch
import torch.nn.functional as F

from seq2seq.model.loss import label_smoothed_loss


def logits_and_target(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    logits = (3 * torch.randn(9, 11, dtype=dtype)).requires_grad_()
    return logits, torch.randint(0, 11, (9,))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_loss_nll_and_gradient_equal_torch_cross_entropy(
    smoothing: float, dtype: torch.dtype
) -> None:
    logits, target = logits_and_target(dtype)
    loss, nll, tokens = label_smoothed_loss(logits, target, smoothing)
    (gradient,) = torch.autograd.grad(loss, logits)
    expected = F.cross_entropy(logits, target, label_smoothing=smoothing)
    (expected_gradient,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(gradient, expected_gradient)
    torch.testing.assert_close(nll, F.cross_entropy(logits, target).detach())
    assert not nll.requires_grad and tokens == 9


def test_padding_rows_past_the_targets_add_no_loss_and_get_a_zero_gradient() -> None:
    logits, target = logits_and_target(torch.float64)
    padded = torch.cat((logits, 5 * torch.randn(7, 11, dtype=torch.float64)))  # (16, V)
    loss, nll, tokens = label_smoothed_loss(padded, target, 0.1)
    (gradient,) = torch.autograd.grad(loss, padded)
    expected = F.cross_entropy(logits, target, label_smoothing=0.1)
    (expected_gradient,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(nll, F.cross_entropy(logits, target).detach())
    torch.testing.assert_close(gradient[:9], expected_gradient)
    assert tokens == 9 and torch.equal(gradient[9:], torch.zeros(7, 11, dtype=torch.float64))


def test_backward_matches_central_differences() -> None:
    """The hand-written backward against the loss's own numerical derivative (float64)."""
    logits, target = logits_and_target(torch.float64)
    weights = torch.rand(9, 1, dtype=torch.float64)  # uneven upstream gradient per position

    def objective(values: torch.Tensor) -> torch.Tensor:
        return label_smoothed_loss(values * weights, target, 0.2)[0]

    (analytic,) = torch.autograd.grad(objective(logits), logits)
    numeric = torch.zeros_like(logits)
    step = 1e-6
    with torch.no_grad():
        for index in range(logits.numel()):
            shift = torch.zeros(logits.numel(), dtype=torch.float64)
            shift[index] = step
            shift = shift.view_as(logits)
            numeric.view(-1)[index] = (objective(logits + shift) - objective(logits - shift)) / (
                2 * step
            )
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_low_precision_logits_get_a_gradient_of_their_own_dtype() -> None:
    logits, target = logits_and_target(torch.float32)
    low = logits.detach().bfloat16().requires_grad_()
    loss, _, _ = label_smoothed_loss(low, target, 0.1)
    loss.backward()
    assert loss.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    expected = F.cross_entropy(low.float(), target, label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)


def test_a_second_backward_through_the_loss_raises_instead_of_a_wrong_gradient() -> None:
    logits, target = logits_and_target(torch.float64)
    loss, _, _ = label_smoothed_loss(logits, target, 0.1)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()
