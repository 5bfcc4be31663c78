"""`seq2seq average`: the mean of checkpoints' weights, chosen by name or from a run."""

import re
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import load_model
from seq2seq.cli import main as seq2seq
from seq2seq.lightning_cli import main as train
from seq2seq.translator import Translator
from tests.training_helpers import tiny_run_args

BLEU_CALLBACK = (
    "ModelCheckpoint{'monitor': 'val/bleu', 'mode': 'max', 'every_n_train_steps': 0,"
    " 'every_n_epochs': 1, 'train_time_interval': None}"
)


def variant(
    source: Path, path: Path, step: int, kept: dict[str, float] | None = None, shift: float = 0.0
) -> Path:
    """A copy of the checkpoint at `source` as if saved at `step`, every float weight moved by
    `shift` (a different point of the same model); `kept`: the top-k checkpoints by validation
    BLEU its ModelCheckpoint recorded (name -> score)."""
    checkpoint = torch.load(source, weights_only=True)
    checkpoint["global_step"] = step
    checkpoint["state_dict"] = {
        name: tensor + shift if tensor.is_floating_point() else tensor
        for name, tensor in checkpoint["state_dict"].items()
    }
    checkpoint["callbacks"] = {}
    if kept is not None:
        top_k = {name: torch.tensor(score) for name, score in kept.items()}
        checkpoint["callbacks"][BLEU_CALLBACK] = {"monitor": "val/bleu", "best_k_models": top_k}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def translations(checkpoint: Path, sources: list[str], beam_size: int) -> list[str]:
    return Translator.from_checkpoint(checkpoint).translate(sources, beam_size=beam_size)


def test_a_checkpoint_averaged_with_itself_translates_exactly_as_it(trained, tmp_path) -> None:
    averaged = tmp_path / "avg.ckpt"
    seq2seq(["average", "--checkpoints", str(trained.checkpoint), str(trained.checkpoint),
             "--output", str(averaged)])  # fmt: skip
    sources = (trained.corpus / "test.de").read_text().splitlines()[:40]
    for beam_size in (1, 5):
        expected = translations(trained.checkpoint, sources, beam_size)
        assert translations(averaged, sources, beam_size) == expected
    saved = torch.load(averaged, weights_only=True)
    assert "optimizer_states" not in saved and saved["averaged_from"]


def test_the_average_of_two_checkpoints_is_their_elementwise_mean(trained, tmp_path) -> None:
    other = variant(trained.checkpoint, tmp_path / "b.ckpt", 7, shift=0.25)
    averaged = tmp_path / "avg.ckpt"
    seq2seq(["average", "--checkpoints", str(trained.checkpoint), str(other),
             "--output", str(averaged)])  # fmt: skip
    first = torch.load(trained.checkpoint, weights_only=True)["state_dict"]
    second = torch.load(other, weights_only=True)["state_dict"]
    mean = torch.load(averaged, weights_only=True)["state_dict"]
    for name, tensor in first.items():
        expected = ((tensor.double() + second[name].double()) / 2).to(tensor.dtype)
        assert torch.equal(mean[name], expected), name
    load_model(averaged)  # a checkpoint like any other


def test_an_averaged_checkpoint_is_tested_by_train_py(trained, tmp_path, capsys) -> None:
    averaged = tmp_path / "avg.ckpt"
    seq2seq(["average", "--checkpoints", str(trained.checkpoint), "--output", str(averaged)])
    root = trained.checkpoint.parents[2]  # tiny_run_args' work directory: the same data
    options = tiny_run_args(trained.corpus, root, **{"trainer.default_root_dir": str(tmp_path)})
    train(["test", *options, "--ckpt_path", str(averaged)])
    assert "test/bleu" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("choice", "expected_steps", "step"),
    [(["--last", "2"], [40, 45], 45), (["--best", "2"], [40, 10], 40)],
)
def test_last_and_best_choose_among_a_runs_checkpoints(
    choice: list[str], expected_steps: list[int], step: int, trained, tmp_path, capsys
) -> None:
    """--last: the latest files; --best: the top-k the newest checkpoint's ModelCheckpoint
    recorded (moved with the run: found by name), not a later last.ckpt's stale score."""
    run = tmp_path / "run"
    scores = {10: 30.0, 20: 12.0, 30: 25.0, 40: 33.0}
    for kept_step in scores:
        variant(trained.checkpoint, run / "checkpoints" / f"val-{kept_step}.ckpt", kept_step)
    kept = {f"elsewhere/checkpoints/val-{s}.ckpt": score for s, score in scores.items()}
    variant(trained.checkpoint, run / "checkpoints" / "last.ckpt", 45, kept)
    (run / "checkpoints" / "best.ckpt").symlink_to("val-40.ckpt")
    averaged = tmp_path / "avg.ckpt"
    seq2seq(["average", "--run", str(run), *choice, "--output", str(averaged)])
    said = capsys.readouterr().err
    assert [int(n) for n in re.findall(r"\(update (\d+)", said)] == expected_steps
    assert "best.ckpt" not in said
    assert torch.load(averaged, weights_only=True)["global_step"] == step


def test_checkpoints_of_different_models_are_refused_naming_the_difference(
    trained, tmp_path, capsys
) -> None:
    other = torch.load(trained.checkpoint, weights_only=True)
    other["hyper_parameters"]["architecture"]["decoder_hidden_size"] = 128
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(SystemExit) as exit_:
        seq2seq(["average", "--checkpoints", str(trained.checkpoint), str(tmp_path / "other.ckpt"),
                 "--output", str(tmp_path / "avg.ckpt")])  # fmt: skip
    assert exit_.value.code == 1
    error = capsys.readouterr().err
    assert "different architectures: decoder_hidden_size 64 vs 128" in error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "avg.ckpt").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "RUN"], "--run needs --last K or --best K"),
        (["--run", "RUN", "--last", "9"], "cannot take 9 checkpoints: the run keeps 1"),
        (["--run", "RUN", "--best", "1"], "records no checkpoints kept by val/bleu"),
        (["--checkpoints", "CKPT", "--last", "1"], "choose in a --run directory"),
    ],
)
def test_wrong_choices_are_one_line(args, message, trained, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    variant(trained.checkpoint, run / "checkpoints" / "last.ckpt", 5)
    args = [{"RUN": str(run), "CKPT": str(trained.checkpoint)}.get(a, a) for a in args]
    with pytest.raises(SystemExit):
        seq2seq(["average", *args, "--output", str(tmp_path / "avg.ckpt")])
    assert message in capsys.readouterr().err


def test_the_output_may_not_be_an_input(trained, tmp_path, capsys) -> None:
    copy = variant(trained.checkpoint, tmp_path / "a.ckpt", 3)
    with pytest.raises(SystemExit):
        seq2seq(["average", "--checkpoints", str(copy), "--output", str(copy)])
    assert "is one of the inputs" in capsys.readouterr().err
