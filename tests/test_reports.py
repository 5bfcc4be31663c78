"""What a run leaves for a person to read: train.log, metrics.csv, grad_flow.csv, the learning
curves and the validation hypotheses (seq2seq/reports.py), through `train.py fit`."""

import csv
from pathlib import Path

import pytest
import torch

from seq2seq.lightning_cli import main
from tests.training_helpers import reversal_corpus, tiny_run_args


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """9 updates on word reversal (about 10 batches an epoch), validating after 4 and 8 and at
    the last update, logging every 3."""
    root = tmp_path_factory.mktemp("reports")
    corpus = reversal_corpus(root / "corpus", train_pairs=600)
    options = {
        "trainer.max_steps": 9,
        "trainer.val_check_interval": 4,
        "trainer.log_every_n_steps": 3,
        "trainer.logger": "null",  # the default loggers
        "test_after_fit": "true",
    }
    main(["fit", *tiny_run_args(corpus, root, **options)])
    return root / "run"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


def test_metrics_csv_has_one_row_per_logged_update(run: Path) -> None:
    metrics = rows(run / "metrics.csv")
    steps = [int(row["step"]) for row in metrics]
    assert steps == sorted(set(steps))  # one row each
    logged = [row for row in metrics if row.get("train/loss")]
    assert len(logged) >= 3
    validated = [int(row["step"]) for row in metrics if row.get("val/bleu")]
    assert validated == [3, 7, 8]  # the CSV logger counts steps from 0: updates 4, 8 and 9
    assert not any(key.startswith("grad_flow/") for key in metrics[0])
    assert rows(run / "grad_flow.csv")[0].keys() == {"step", "direction", "position", "norm"}


def test_validation_hypotheses_are_saved_in_corpus_order(run: Path) -> None:
    files = sorted((run / "validation").iterdir())
    assert [f.name for f in files] == ["step-000004.txt", "step-000008.txt", "step-000009.txt"]
    corpus = run.parent / "corpus"
    sources = (corpus / "val.de").read_text().splitlines()
    assert len(files[-1].read_text().splitlines()) == len(sources)


def test_train_log_holds_the_console_without_progress_bars(run: Path) -> None:
    log = (run / "train.log").read_text()
    assert "fit in " in log and "train corpus: kept" in log and "model: " in log
    assert log.count("example 1: source: ") == 3  # at each validation
    assert "test: bleu " in log and "chrf " in log
    assert "\r" not in log and "it/s" not in log


def test_learning_curves_are_drawn(run: Path) -> None:
    """The PNG, from points every 3 logged updates, before each validation and at the end."""
    assert (run / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = torch.load(run / "checkpoints/last.ckpt", weights_only=True)["callbacks"]
    curves = saved["LearningCurves"]
    assert sorted(curves["train/loss"]) == [3, 4, 6, 8, 9]
    assert sorted(curves["val/bleu"]) == sorted(curves["val/loss"]) == [4, 8, 9]
    assert all(0 < loss < 10 for loss in curves["train/loss"].values())
    assert sorted(curves["learning rate"]) == [3, 4, 6, 8, 9]


def test_a_new_run_in_an_earlier_runs_directory_starts_the_metrics_anew(tmp_path: Path) -> None:
    """A fit without --ckpt_path replaces the files instead of merging its rows into the rows
    of the same steps of the run before it; a resumed fit and a validation continue them."""
    corpus = reversal_corpus(tmp_path / "corpus", train_pairs=200)

    def run(subcommand: str, steps: int, *extra: str) -> list[dict[str, str]]:
        options = {"trainer.max_steps": steps, "trainer.log_every_n_steps": 1}
        if subcommand == "fit":
            options["trainer.limit_val_batches"] = 0
        options["trainer.logger"] = "null"
        main([subcommand, *tiny_run_args(corpus, tmp_path, **options), *extra])
        return rows(tmp_path / "run/metrics.csv")

    def steps(logged: list[dict[str, str]]) -> list[int]:
        return [int(row["step"]) for row in logged]

    assert steps(run("fit", 6))[-1] == 5  # the CSV logger counts steps from 0
    with pytest.warns(UserWarning, match="holds an earlier run's metrics.csv"):
        assert steps(run("fit", 2)) == [0, 1]
    resumed = run("fit", 4, "--ckpt_path=last")
    assert steps(resumed) == [0, 1, 2, 3]
    validated = run("validate", 4, "--ckpt_path=last")
    assert steps(validated) == steps(resumed)  # its scores join a row of the run
    assert [r["train/loss"] for r in validated] == [r["train/loss"] for r in resumed]
    assert sum(bool(row.get("val/bleu")) for row in validated) == 1
