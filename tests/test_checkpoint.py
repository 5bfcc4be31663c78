"""The checkpoint layout (seq2seq/checkpoint.py): rebuilding a model without Lightning."""

from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import current_hyperparameters, load_model
from seq2seq.errors import Seq2SeqError
from seq2seq.plain import from_plain
from seq2seq.schedules import Budget, Plateau, Schedule


def test_load_model_gives_model_tokenizer_and_test_search(trained) -> None:
    model, tokenizer, search = load_model(trained.checkpoint)
    saved = torch.load(trained.checkpoint, weights_only=True)
    assert not model.training
    assert model.config.tgt_vocab_size == tokenizer.tgt_vocab_size == 40
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved["state_dict"][f"model.{name}"]), name
    assert search.beam_size == saved["hyper_parameters"]["test_search"]["beam_size"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("seq2seq_tokenizer"), "holds no tokenizer"),
        (lambda c: c["hyper_parameters"].pop("architecture"), "is not a seq2seq checkpoint"),
        (
            lambda c: c["state_dict"].update({"model.decoder.bridge.bias": torch.zeros(3)}),
            "the checkpoint does not fit this model: decoder.bridge.bias is (3,)",
        ),
    ],
)
def test_a_foreign_checkpoint_is_one_clear_error(
    change, message: str, trained, tmp_path: Path
) -> None:
    checkpoint = torch.load(trained.checkpoint, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, tmp_path / "foreign.ckpt")
    with pytest.raises(Seq2SeqError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_model(tmp_path / "foreign.ckpt")


@pytest.mark.parametrize(
    ("legacy", "schedule"),
    [
        (
            {"scheduler": "budget", "warmup_steps": 0, "decay_fraction": 0.5},
            Budget(warmup_steps=0, decay_fraction=0.5),
        ),
        (
            {"scheduler": "plateau", "plateau_factor": 0.25, "plateau_patience": 2},
            Plateau(factor=0.25, patience=2),
        ),
    ],
)
def test_hyperparameters_of_string_schedules_become_schedule_classes(
    legacy: dict, schedule: Schedule
) -> None:
    older = {"learning_rate": 0.003, "max_nonfinite_steps": 5, "min_learning_rate": 1e-5, **legacy}
    current = current_hyperparameters(older)
    assert set(current) == {"learning_rate", "scheduler"}
    assert from_plain(Schedule, current["scheduler"]) == schedule
    assert current_hyperparameters(current) == current
