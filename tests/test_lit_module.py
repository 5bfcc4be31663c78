import math

import pytest
import torch

from seq2seq.lit_module import (
    TranslationModule,
    build_optimizer,
    inverse_sqrt_schedule,
)
from tests.conftest import TINY_ARCHITECTURE


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
