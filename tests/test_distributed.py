"""Multi-process training for real: two CPU processes under DDP (gloo), through train.py."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq import lightning_cli
from tests.training_helpers import reversal_corpus, tiny_run_args

ROOT = Path(__file__).resolve().parent.parent


def train_py(*args: str) -> None:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_ranks_train_identically_and_validate_like_one(tmp_path: Path) -> None:
    corpus = reversal_corpus(tmp_path / "corpus")
    ddp = {"trainer.strategy": "ddp", "trainer.devices": 2}
    # the learning rate falls with wall-clock time from the first update: ranks read their own
    # clocks, so they stay identical only if they all use rank 0's reading
    time_budget = {
        "model.scheduler": "Budget",
        "model.scheduler.warmup_steps": 0,
        "model.scheduler.decay_fraction": 1.0,
        "trainer.max_time": "00:00:05:00",
        "trainer.limit_val_batches": 0,
    }
    train_py(
        "fit",
        *tiny_run_args(corpus, tmp_path, **ddp, **time_budget),
        "--trainer.callbacks+=tests.training_helpers.StopAt",
        "--trainer.callbacks.step=8",
        "--trainer.callbacks+=tests.training_helpers.SaveRankParameters",
        f"--trainer.callbacks.directory={tmp_path / 'ranks'}",
    )
    rank0 = torch.load(tmp_path / "ranks/rank0.pt")
    rank1 = torch.load(tmp_path / "ranks/rank1.pt")
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    initial = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)["global_step"]
    assert initial == 8

    scores = {}
    for label, options in (("two", ddp), ("one", {})):
        metrics = tmp_path / f"metrics-{label}.json"
        train_py(
            "validate",
            *tiny_run_args(corpus, tmp_path, **options),
            "--ckpt_path=last",
            "--trainer.callbacks+=tests.training_helpers.SaveMetrics",
            f"--trainer.callbacks.path={metrics}",
        )
        scores[label] = json.loads(metrics.read_text())
    assert scores["two"]["val/bleu"] == pytest.approx(scores["one"]["val/bleu"], abs=1e-6)
    assert scores["two"]["val/chrf"] == pytest.approx(scores["one"]["val/chrf"], abs=1e-6)


@pytest.mark.slow
def test_predict_on_two_ranks_merges_in_input_order(tmp_path: Path) -> None:
    corpus = reversal_corpus(tmp_path / "corpus")
    train_py(
        "fit",
        *tiny_run_args(
            corpus, tmp_path, **{"trainer.max_steps": 60, "trainer.limit_val_batches": 0}
        ),
    )
    outputs = {}
    for label, options in (("two", {"trainer.strategy": "ddp", "trainer.devices": 2}), ("one", {})):
        output = tmp_path / f"predictions-{label}.en"
        train_py(
            "predict",
            *tiny_run_args(corpus, tmp_path, **options, **{"model.test_search.beam_size": 1}),
            "--ckpt_path=last",
            "--trainer.callbacks+=seq2seq.callbacks.PredictionWriter",
            f"--trainer.callbacks.output={output}",
        )
        outputs[label] = output.read_text().splitlines()
        assert sorted(
            p.name for p in tmp_path.iterdir() if p.name.startswith("predictions")
        ) == sorted(f"predictions-{name}.en" for name in outputs)  # the ranks' shares are gone
    assert len(outputs["two"]) == 100
    assert outputs["two"] == outputs["one"]


@pytest.mark.slow
def test_two_nodes_of_one_process_train_like_one_node_of_two(tmp_path: Path) -> None:
    """Lightning's environment variables (MASTER_ADDR, MASTER_PORT, NODE_RANK), as a cluster
    sets them, with two launches of train.py on this machine: the same global batches as one
    node with two processes, so the same parameters; the validation of the last update, split
    across the nodes, scores what one process scores on the same checkpoint."""
    corpus = reversal_corpus(tmp_path / "corpus")
    shared = {
        "trainer.strategy": "ddp",
        "trainer.max_steps": 6,
        "data.data_dir": str(tmp_path / "data"),  # prepared by the first run
    }

    def saving(directory: str) -> tuple[str, ...]:
        return (
            "--trainer.callbacks+=tests.training_helpers.SaveRankParameters",
            f"--trainer.callbacks.directory={tmp_path / directory}",
            "--trainer.callbacks+=tests.training_helpers.SaveMetrics",
            f"--trainer.callbacks.path={tmp_path / directory / 'metrics.json'}",
        )

    train_py(
        "fit",
        *tiny_run_args(corpus, tmp_path / "one", **shared, **{"trainer.devices": 2}),
        *saving("one_node"),
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = tiny_run_args(
        corpus, tmp_path / "two", **shared, **{"trainer.devices": 1, "trainer.num_nodes": 2}
    )
    nodes = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "fit", *options, *saving("two_nodes")],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "NODE_RANK": str(node),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (0, 1)
    ]
    for node in nodes:
        _, errors = node.communicate(timeout=600)
        assert node.returncode == 0, errors[-3000:]
    for rank in (0, 1):
        one = torch.load(tmp_path / f"one_node/rank{rank}.pt")
        two = torch.load(tmp_path / f"two_nodes/rank{rank}.pt")
        for name, parameter in one.items():
            torch.testing.assert_close(two[name], parameter, rtol=1e-6, atol=1e-7, msg=name)

    alone = tmp_path / "alone.json"
    train_py(
        "validate",
        *tiny_run_args(corpus, tmp_path / "alone", **{"data.data_dir": str(tmp_path / "data")}),
        f"--ckpt_path={tmp_path / 'two/run/checkpoints/last.ckpt'}",
        "--trainer.callbacks+=tests.training_helpers.SaveMetrics",
        f"--trainer.callbacks.path={alone}",
    )
    scores = {
        name: json.loads(path.read_text())
        for name, path in (("two nodes", tmp_path / "two_nodes/metrics.json"), ("alone", alone))
    }
    for metric in ("val/bleu", "val/chrf"):
        assert scores["two nodes"][metric] == pytest.approx(scores["alone"][metric], abs=1e-6)
    assert scores["alone"]["val/chrf"] > 0  # a score that tells models apart


def test_a_run_shuts_its_process_group_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run_joining_a_group(args: list[str] | None, prog: str) -> None:
        store = f"file://{tmp_path / 'store'}"
        torch.distributed.init_process_group("gloo", init_method=store, rank=0, world_size=1)

    monkeypatch.setattr(lightning_cli, "build_cli", run_joining_a_group)
    lightning_cli.main([])
    assert not torch.distributed.is_initialized()
