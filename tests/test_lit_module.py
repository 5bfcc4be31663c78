import math

import pytest
import torch
import torch.nn.functional as F

from seq2seq.data.tokenizer import PAD_ID
from seq2seq.lit_module import (
    TranslationModule,
    build_optimizer,
    inverse_sqrt_schedule,
    label_smoothed_loss,
)
from tests.conftest import TINY_ARCHITECTURE


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothed_loss_equals_torch_cross_entropy(smoothing: float) -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.double)
    target = torch.randint(1, 11, (3, 5))
    target[1, 3:] = PAD_ID
    loss, nll, tokens = label_smoothed_loss(logits, target, smoothing)
    expected = F.cross_entropy(
        logits.flatten(0, 1), target.flatten(), ignore_index=PAD_ID, label_smoothing=smoothing
    )
    torch.testing.assert_close(loss, expected.float() if loss.dtype == torch.float32 else expected)
    plain = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD_ID)
    torch.testing.assert_close(nll.double(), plain, rtol=1e-6, atol=1e-6)
    assert tokens == 13


def test_inverse_sqrt_schedule() -> None:
    factor = inverse_sqrt_schedule(warmup_steps=100)
    assert factor(0) == pytest.approx(0.01)
    assert factor(50) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(1.0)
    assert factor(400) == pytest.approx(0.5)
    assert factor(10_000) == pytest.approx(math.sqrt(100 / 10_000))


def test_hyperparameters_are_plain_types_and_rebuild_the_model() -> None:
    architecture = TINY_ARCHITECTURE
    module = TranslationModule(architecture, learning_rate=3e-4)
    assert module.hparams.architecture == architecture.__dict__
    assert module.hparams.learning_rate == 3e-4
    rebuilt = TranslationModule(**module.hparams)
    assert rebuilt.model.config == architecture


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_optimizer_updates_like_the_default_one(name: str) -> None:
    torch.manual_seed(0)
    weights = [torch.randn(40, 30), torch.randn(30)]
    gradients = [[torch.randn_like(w) for w in weights] for _ in range(5)]
    results = []
    for optimizer_of in (
        lambda ps: build_optimizer(ps, name, 1e-3, 0.01),
        lambda ps: (torch.optim.AdamW if name == "adamw" else torch.optim.Adam)(
            ps, lr=1e-3, weight_decay=0.01, foreach=False
        ),
    ):
        parameters = [torch.nn.Parameter(w.clone()) for w in weights]
        optimizer = optimizer_of(parameters)
        for step in gradients:
            for parameter, gradient in zip(parameters, step, strict=True):
                parameter.grad = gradient.clone()
            optimizer.step()
        results.append(parameters)
    for fused, plain in zip(*results, strict=True):
        torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-7)
