"""Fine-tuning (`--model.init_from`): a trained model's weights and tokenizer, a fresh run."""

from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import TOKENIZER_KEY
from seq2seq.lightning_cli import main
from tests.training_helpers import reversal_corpus, tiny_run_args


def fine_tuning_args(trained, tmp_path: Path, **overrides: object) -> list[str]:
    """One update on another corpus, from the session's trained checkpoint, nearly frozen."""
    corpus = reversal_corpus(tmp_path / "in_domain", train_pairs=500, seed=5)
    settings = {
        "trainer.max_steps": 1,
        "trainer.limit_val_batches": 0,
        "test_after_fit": "false",
        "model.learning_rate": "1e-9",
        **overrides,
    }
    return [*tiny_run_args(corpus, tmp_path, **settings), "--model.init_from",
            str(trained.checkpoint)]  # fmt: skip


def test_fine_tuning_starts_at_step_0_from_the_checkpoints_weights_and_tokenizer(
    trained, tmp_path: Path
) -> None:
    main(["fit", *fine_tuning_args(trained, tmp_path)])
    tuned = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    start = torch.load(trained.checkpoint, weights_only=True)
    assert start["global_step"] > 1 and tuned["global_step"] == 1  # a fresh count
    assert tuned[TOKENIZER_KEY] == start[TOKENIZER_KEY]  # not one trained on the new corpus
    for name, tensor in start["state_dict"].items():
        assert torch.allclose(tuned["state_dict"][name], tensor, atol=1e-6), name


def test_another_architecture_is_one_line_naming_the_sizes(trained, tmp_path, capsys) -> None:
    args = fine_tuning_args(trained, tmp_path, **{"model.architecture.decoder_hidden_size": 48})
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert "does not fit this model" in error and "64) there and (32, 48) here" in error
    assert len(error.splitlines()) == 1


def test_another_vocabulary_size_says_the_one_to_set(trained, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["fit", *fine_tuning_args(trained, tmp_path, **{"data.vocab_size": 50})])
    assert "has 40 pieces: set --data.vocab_size 40" in capsys.readouterr().err
