import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from seq2seq.lit_module import TranslationModule
from seq2seq.schedules import Budget, Plateau
from tests.models import TINY_ARCHITECTURE


def test_hyperparameters_are_plain_types_and_rebuild_the_module() -> None:
    module = TranslationModule(TINY_ARCHITECTURE, learning_rate=3e-4, scheduler=Plateau(patience=3))
    hparams = dict(module.hparams)
    assert hparams["architecture"] == TINY_ARCHITECTURE.__dict__
    assert hparams["scheduler"] == {
        "class_path": "seq2seq.schedules.Plateau",
        "init_args": {"factor": 0.5, "patience": 3, "min_learning_rate": 1e-5},
    }
    plain = (dict, list, str, int, float, bool, type(None))
    assert all(isinstance(value, plain) for value in hparams.values())
    rebuilt = TranslationModule(**hparams)
    assert rebuilt.model.config == TINY_ARCHITECTURE
    assert rebuilt.scheduler == Plateau(patience=3)
    assert rebuilt.searches == module.searches


def module_under(trainer: L.Trainer, **hyperparameters: object) -> TranslationModule:
    module = TranslationModule(TINY_ARCHITECTURE, **hyperparameters)
    module.trainer = trainer
    return module


def test_the_configured_schedule_is_built_for_the_optimizer() -> None:
    trainer = L.Trainer(max_steps=10, logger=False, enable_progress_bar=False)
    built = module_under(trainer, scheduler=Budget(decay_fraction=0.5)).configure_optimizers()
    assert built["lr_scheduler"]["interval"] == "step"
    assert built["lr_scheduler"]["scheduler"].decay_fraction == 0.5
    plateau = module_under(trainer, scheduler=Plateau()).configure_optimizers()
    assert plateau["lr_scheduler"]["monitor"] == "val/bleu"


@pytest.mark.parametrize("algorithm", ["norm", "value", None])
def test_bf16_mixed_clips_with_a_fused_optimizer(algorithm: str | None) -> None:
    """Lightning's mixed-precision plugin refuses to clip for a fused optimizer (an fp16 loss
    scaler's guard); bf16 has no scaler, so the module clips itself, by norm or by value."""
    trainer = L.Trainer(precision="bf16-mixed", logger=False, enable_progress_bar=False)
    module = module_under(trainer, scheduler=Plateau())
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
    optimizer = module_under(trainer, scheduler=Plateau()).configure_optimizers()["optimizer"]
    assert not optimizer.defaults.get("fused")
