"""configs/ema.yaml: training keeps an exponential moving average of the weights, and what a run
saves, validates and translates with is that average."""

from pathlib import Path

import lightning as L
import pytest
import torch

from seq2seq.checkpoint import MODEL_PREFIX, load_model
from seq2seq.lightning_cli import main as train
from tests.training_helpers import reversal_corpus, tiny_run_args

EMA_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ema.yaml"


def weights_after(corpus: Path, work: Path, updates: int, *extra: str) -> Path:
    """Train `updates` updates (no validation); the last checkpoint."""
    settings = {"trainer.max_steps": updates, "trainer.limit_val_batches": 0}
    train(["fit", *tiny_run_args(corpus, work, **settings), *extra])
    return work / "run" / "checkpoints" / "last.ckpt"


def test_the_checkpoint_holds_the_average_and_the_raw_weights_beside_it(tmp_path) -> None:
    """With decay 1 the average never leaves the first update's weights: the checkpoint of a
    5-update EMA run loads as the checkpoint of a 1-update run, and keeps the raw weights of
    update 5 for resuming (also when its last save comes after training ended)."""
    corpus = reversal_corpus(tmp_path / "corpus", train_pairs=300)
    one = weights_after(corpus, tmp_path / "one", 1)
    ema = ["--config", str(EMA_CONFIG), "--trainer.callbacks.decay", "1.0"]
    five = weights_after(corpus, tmp_path / "five", 5, *ema)
    first_update = load_model(one).model.state_dict()
    averaged = load_model(five).model.state_dict()
    assert all(torch.equal(averaged[name], first_update[name]) for name in first_update)
    saved = torch.load(five, weights_only=True)
    assert saved["averaging_state"]["n_averaged"].item() == 5
    raw = saved["current_model_state"]
    assert any(not torch.equal(raw[MODEL_PREFIX + name], averaged[name]) for name in averaged)


def test_a_run_extended_from_its_last_checkpoint_continues_raw_weights_and_average(
    tmp_path,
) -> None:
    """3 updates, then `--ckpt_path last` to 6: the same average and raw weights as 6 at once."""
    corpus = reversal_corpus(tmp_path / "corpus", train_pairs=300)
    ema = ["--config", str(EMA_CONFIG), "--trainer.callbacks.decay", "0.5"]
    straight = torch.load(weights_after(corpus, tmp_path / "straight", 6, *ema), weights_only=True)
    weights_after(corpus, tmp_path / "resumed", 3, *ema)
    last = weights_after(corpus, tmp_path / "resumed", 6, *ema, "--ckpt_path", "last")
    resumed = torch.load(last, weights_only=True)
    for key in ("state_dict", "current_model_state"):
        for name, tensor in straight[key].items():
            torch.testing.assert_close(resumed[key][name], tensor, rtol=1e-5, atol=1e-6)


class SaveTestedWeights(L.Callback):
    """Saves the model weights a test starts with to `path`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.save(pl_module.model.state_dict(), self.path)


def test_the_test_after_fit_tests_the_average_of_the_best_checkpoint(tmp_path) -> None:
    """The best checkpoint (by the average's validation BLEU) is tested with the average it
    holds, not with the raw weights saved beside it for resuming."""
    corpus = reversal_corpus(tmp_path / "corpus", train_pairs=300)
    settings = {
        "trainer.max_steps": 6,
        "trainer.val_check_interval": 3,
        "trainer.limit_val_batches": 1,
        "trainer.callbacks.save_top_k": 1,
        "trainer.callbacks.monitor": "val/bleu",
        "trainer.callbacks.mode": "max",
        "test_after_fit": "true",
    }
    tested = tmp_path / "tested.pt"
    ema = ["--config", str(EMA_CONFIG), "--trainer.callbacks.decay", "1.0"]
    capture = ["--trainer.callbacks+", f"{__name__}.SaveTestedWeights"]
    capture += ["--trainer.callbacks.path", str(tested)]
    train(["fit", *tiny_run_args(corpus, tmp_path, **settings), *ema, *capture])
    best = sorted((tmp_path / "run" / "checkpoints").glob("epoch=*.ckpt"))[0]
    raw = torch.load(best, weights_only=True)["current_model_state"]
    weights = torch.load(tested, weights_only=True)
    averaged = load_model(best).model.state_dict()
    assert all(torch.equal(weights[name], averaged[name]) for name in averaged)
    assert any(not torch.equal(weights[name], raw[MODEL_PREFIX + name]) for name in weights)


def test_the_overlay_appends_the_callback_to_the_reference_config(capsys) -> None:
    reference = Path(__file__).resolve().parents[1] / "configs" / "multi30k_de_en.yaml"
    with pytest.raises(SystemExit):  # --print_config prints and exits
        train(["fit", "--config", str(reference), "--config", str(EMA_CONFIG), "--print_config"])
    printed = capsys.readouterr().out
    assert "seq2seq.callbacks.BestCheckpoints" in printed  # kept, not replaced
    assert "seq2seq.callbacks.ExponentialMovingAverage" in printed
