import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.plugins.precision import MixedPrecision

from seq2seq.errors import Seq2SeqError
from seq2seq.lit_module import TranslationModule, build_optimizer
from tests.conftest import TINY_ARCHITECTURE


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


def module_under(trainer: L.Trainer, **hyperparameters: object) -> TranslationModule:
    module = TranslationModule(TINY_ARCHITECTURE, **hyperparameters)
    module.trainer = trainer
    return module


def test_budget_share_is_the_time_share_under_max_time(monkeypatch) -> None:
    trainer = L.Trainer(max_time={"seconds": 200}, logger=False, enable_progress_bar=False)
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    spent = module_under(trainer, scheduler="budget")._budget_spent()
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 50.0)
    assert spent() == pytest.approx(0.25)


def test_budget_share_is_the_larger_of_updates_and_time(monkeypatch) -> None:
    trainer = L.Trainer(
        max_steps=100, max_time={"seconds": 200}, logger=False, enable_progress_bar=False
    )
    timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
    spent = module_under(trainer, scheduler="budget")._budget_spent()
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 50.0)
    monkeypatch.setattr(type(trainer), "global_step", property(lambda self: 40))
    assert spent() == pytest.approx(0.4)
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 120.0)
    assert spent() == pytest.approx(0.6)


def test_budget_schedule_without_a_budget_is_refused() -> None:
    trainer = L.Trainer(max_epochs=-1, logger=False, enable_progress_bar=False)
    with pytest.raises(Seq2SeqError, match="the budget schedule needs a budget"):
        module_under(trainer, scheduler="budget").configure_optimizers()


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"scheduler": "budget", "decay_fraction": 0.0}, "decay_fraction must lie in"),
        ({"scheduler": "inverse_sqrt", "warmup_steps": 0}, "too small for inverse_sqrt"),
        ({"scheduler": "budget", "warmup_steps": -1}, "too small for budget"),
    ],
)
def test_schedule_settings_are_checked(hyperparameters: dict, message: str) -> None:
    with pytest.raises(Seq2SeqError, match=message):
        TranslationModule(TINY_ARCHITECTURE, **hyperparameters)


@pytest.mark.parametrize("algorithm", ["norm", "value", None])
def test_bf16_mixed_clips_with_a_fused_optimizer(algorithm: str | None) -> None:
    """Lightning's mixed-precision plugin refuses to clip for a fused optimizer (an fp16 loss
    scaler's guard); bf16 has no scaler, so the module clips itself, by norm or by value."""
    trainer = L.Trainer(precision="bf16-mixed", logger=False, enable_progress_bar=False)
    module = module_under(trainer)
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"]
    for parameter in module.parameters():
        parameter.grad = torch.full_like(parameter, 3.0)
    module.configure_gradient_clipping(optimizer, 0.5, algorithm)
    gradients = [parameter.grad for parameter in module.parameters()]
    if algorithm == "value":
        assert all(float(g.abs().max()) == 0.5 for g in gradients)
    else:  # by norm, also when no algorithm is named
        total = torch.linalg.vector_norm(torch.stack([g.norm() for g in gradients]))
        assert float(total) == pytest.approx(0.5, rel=1e-5)


def test_an_fp16_loss_scaler_gets_an_unfused_optimizer() -> None:
    """A fused step unscales fp16 gradients internally, after clipping would have run."""
    scaled = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    trainer = L.Trainer(plugins=[scaled], logger=False, enable_progress_bar=False)
    assert not module_under(trainer).configure_optimizers()["optimizer"].defaults.get("fused")
