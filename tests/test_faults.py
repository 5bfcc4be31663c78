"""Faults during training: non-finite steps, kills, Ctrl-C, corrupt and malicious checkpoints."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seq2seq.callbacks import SkipNonFiniteUpdates
from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.cli import main as seq2seq_main
from seq2seq.errors import Seq2SeqError
from seq2seq.files import TEMPORARY_SUFFIX
from seq2seq.lightning_cli import build_cli, main
from tests.training_helpers import RunsCode, reversal_corpus, tiny_run_args

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return reversal_corpus(tmp_path_factory.mktemp("corpus"), train_pairs=800)


def fit(corpus: Path, work: Path, callbacks: list[str], **overrides):
    """Run `train.py fit` in this process with extra callbacks given as `class_path` strings."""
    args = tiny_run_args(corpus, work, **overrides)
    for callback in callbacks:
        args.append(f"--trainer.callbacks+={callback}")
    return build_cli(["fit", *args])


def assert_same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize(
    "poison",
    [
        '{"class_path": "tests.training_helpers.PoisonGradients", "init_args": {"steps": [4]}}',
        '{"class_path": "tests.training_helpers.PoisonGradients",'
        ' "init_args": {"steps": [4], "kind": "explode"}}',
        '{"class_path": "tests.training_helpers.NaNLoss", "init_args": {"steps": [4]}}',
    ],
    ids=["nan-gradient", "exploding-step", "nan-loss"],
)
def test_non_finite_update_is_skipped_and_counted(corpus: Path, tmp_path: Path, poison) -> None:
    cli = fit(
        corpus,
        tmp_path,
        [poison, "tests.training_helpers.SnapshotSteps"],
        **{"trainer.max_steps": 7},
    )
    snapshots = next(c for c in cli.trainer.callbacks if type(c).__name__ == "SnapshotSteps")
    assert_same(snapshots.before[4], snapshots.after[4])  # weights and Adam moments untouched
    assert not torch.equal(
        snapshots.before[5]["model.decoder.bridge.weight"],
        snapshots.after[5]["model.decoder.bridge.weight"],
    )  # then on it goes
    skipping = next(c for c in cli.trainer.callbacks if isinstance(c, SkipNonFiniteUpdates))
    assert skipping.skipped == 1 and cli.trainer.global_step == 7
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert all(v.isfinite().all() for v in saved["state_dict"].values())


def test_too_many_non_finite_updates_in_a_row_stop_training(
    corpus: Path, tmp_path: Path, capsys
) -> None:
    poison = (
        '{"class_path": "tests.training_helpers.PoisonGradients",'
        ' "init_args": {"steps": [3, 4, 5, 6, 7, 8]}}'
    )
    args = tiny_run_args(
        corpus,
        tmp_path,
        **{
            "trainer.max_steps": 20,
            "skip_nonfinite.max_in_a_row": 3,
            "trainer.callbacks.every_n_train_steps": 1,
        },
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, f"--trainer.callbacks+={poison}"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        "train.py: error: training stopped at step 5: 3 updates in a row had a non-finite loss"
        " or gradient norm; lower the learning rate or check the data"
    )
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 5  # the skipped updates count as steps; weights are finite
    assert all(v.isfinite().all() for v in saved["state_dict"].values())


def test_non_finite_weights_are_never_saved(corpus: Path, tmp_path: Path) -> None:
    cli = fit(corpus, tmp_path, [], **{"trainer.max_steps": 1})
    with torch.no_grad():
        cli.model.model.decoder.bridge.weight[0, 0] = float("inf")
    with pytest.raises(Seq2SeqError, match="refusing to save non-finite weights"):
        cli.trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()


def test_save_interrupted_midway_leaves_the_previous_file_whole_and_no_debris(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "last.ckpt"
    save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def dies_halfway(obj, handle) -> None:
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the temporary file is gone


def test_checkpoint_with_a_pickle_payload_is_refused_and_the_payload_never_runs(
    trained, corpus: Path, tmp_path: Path, capsys
) -> None:
    marker = tmp_path / "payload-ran"
    checkpoint = torch.load(trained.checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["innocent"] = RunsCode(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(checkpoint, evil)
    with pytest.raises(SystemExit):
        seq2seq_main(["translate", "--checkpoint", str(evil), "--input", str(trained.checkpoint)])
    with pytest.raises(SystemExit):
        main(["fit", *tiny_run_args(corpus, tmp_path), f"--ckpt_path={evil}"])
    with pytest.raises(SystemExit):
        seq2seq_main(["grad-flow", "--checkpoint", str(evil), "--output", str(tmp_path)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 3 and all("refusing to load" in line for line in errors)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the refusal is torch's weights_only loader
        torch.load(evil, weights_only=True)
    torch.load(evil, weights_only=False)  # proof that the payload is live when unpickled
    assert marker.exists()


def test_truncated_checkpoint_is_a_clear_error(
    trained, corpus: Path, tmp_path: Path, capsys
) -> None:
    truncated = tmp_path / "truncated.ckpt"
    size = trained.checkpoint.stat().st_size
    truncated.write_bytes(trained.checkpoint.read_bytes()[: size // 2])
    with pytest.raises(SystemExit):
        main(["fit", *tiny_run_args(corpus, tmp_path), f"--ckpt_path={truncated}"])
    with pytest.raises(SystemExit):
        seq2seq_main(["translate", "--checkpoint", str(truncated)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [
        f"train.py: error: cannot read checkpoint {truncated}: truncated or not a checkpoint",
        f"seq2seq: error: cannot read checkpoint {truncated}: truncated or not a checkpoint",
    ]


# ---- real processes, real signals -----------------------------------------------------------


def train_process(corpus: Path, work: Path, *extra: str, resume: bool) -> subprocess.Popen:
    args = tiny_run_args(
        corpus,
        work,
        **{"trainer.max_steps": 40, "trainer.callbacks.every_n_train_steps": 3},
    )
    args += [  # `extra` first: `--trainer.callbacks.X` options apply to the last callback
        *extra,
        "--trainer.callbacks+=tests.training_helpers.Heartbeat",
        f"--trainer.callbacks.path={work / 'heartbeat'}",
    ]
    if resume:
        args.append("--ckpt_path=last")
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "fit", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_updates(work: Path, process: subprocess.Popen, updates: int) -> None:
    heartbeat = work / "heartbeat"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if heartbeat.exists() and heartbeat.read_text() and int(heartbeat.read_text()) >= updates:
            return
        time.sleep(0.02)
    raise AssertionError(f"training never reached {updates} updates")


def saved_step(work: Path) -> int:
    return load_checkpoint(work / "run" / "checkpoints" / "last.ckpt")["global_step"]


@pytest.mark.slow
def test_sigkill_at_arbitrary_moments_then_resume_finishes(corpus: Path, tmp_path: Path) -> None:
    """Killed during set-up, mid-step at several points and mid-save; each restart resumes."""
    process = train_process(corpus, tmp_path, resume=False)
    time.sleep(1.0)  # still importing / preparing data: nothing saved yet
    process.kill()
    process.wait()
    for kill_after in (4, 11, 19):
        process = train_process(corpus, tmp_path, resume=True)
        wait_for_updates(tmp_path, process, kill_after)
        time.sleep(0.05 * kill_after % 0.13)  # land at different points inside a step
        process.send_signal(signal.SIGKILL)
        process.wait()
        lost = int((tmp_path / "heartbeat").read_text()) - saved_step(tmp_path)
        assert 0 <= lost < 3 + 2  # at most what followed the last checkpoint (every 3 updates)
    before_save_kill = saved_step(tmp_path)
    kill_in_save = (
        '{"class_path": "tests.training_helpers.KillDuringSave", "init_args": {"kill_at": 2}}'
    )
    process = train_process(corpus, tmp_path, f"--trainer.plugins={kill_in_save}", resume=True)
    assert process.wait() == -signal.SIGKILL
    partial = list((tmp_path / "run" / "checkpoints").glob(f".last.ckpt.*{TEMPORARY_SUFFIX}"))
    assert partial  # the save was cut short before its rename ...
    assert saved_step(tmp_path) >= before_save_kill  # ... and last.ckpt is whole and loads
    process = train_process(corpus, tmp_path, resume=True)
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors
    assert int((tmp_path / "heartbeat").read_text()) == 40  # finished
    assert saved_step(tmp_path) == 40  # the final update, saved when training ends


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "exit_status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["int", "term"]
)
def test_ctrl_c_or_sigterm_saves_a_resumable_checkpoint_and_exits_cleanly(
    corpus: Path, tmp_path: Path, signum: signal.Signals, exit_status: int
) -> None:
    process = train_process(
        corpus, tmp_path, "--trainer.callbacks.every_n_train_steps=0", resume=False
    )
    wait_for_updates(tmp_path, process, 5)
    process.send_signal(signum)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == exit_status and "Traceback" not in errors
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"saved {last}; resume with --ckpt_path last" in errors
    interrupted_at = saved_step(tmp_path)
    assert interrupted_at == int((tmp_path / "heartbeat").read_text())  # nothing lost
    process = train_process(corpus, tmp_path, resume=True)
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors
    assert f"Restored all states from the checkpoint at {last}" in errors
    assert int((tmp_path / "heartbeat").read_text()) == 40


def test_training_writes_only_under_the_paths_it_was_given(corpus: Path, tmp_path: Path) -> None:
    """Current directory, HOME and TMPDIR stay empty; output goes to data_dir and root dir."""
    places = {name: tmp_path / name for name in ("cwd", "home", "tmp", "work")}
    for place in places.values():
        place.mkdir()
    args = tiny_run_args(
        corpus, places["work"], **{"trainer.max_steps": 2, "trainer.logger": "null"}
    )
    environment = {
        **os.environ,
        "HOME": str(places["home"]),
        "TMPDIR": str(places["tmp"]),
        "PYTHONPATH": str(REPO),
        "MPLCONFIGDIR": str(places["work"] / "mpl"),
    }
    completed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "fit", *args],
        cwd=places["cwd"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    for name in ("cwd", "home", "tmp"):
        assert list(places[name].iterdir()) == [], name
    assert {p.name for p in places["work"].iterdir()} <= {"data", "run", "mpl"}


def test_a_full_disk_while_saving_is_one_line_and_resuming_continues(
    corpus: Path, tmp_path: Path, capsys
) -> None:
    """The second save finds the disk full: one line naming the file and the cause, no
    temporary file left, the first checkpoint whole; resuming continues from it."""
    full = (
        '{"class_path": "tests.training_helpers.FullDiskDuringSave", "init_args": {"fail_at": 2}}'
    )
    args = tiny_run_args(
        corpus, tmp_path, **{"trainer.max_steps": 9, "trainer.callbacks.every_n_train_steps": 3}
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, f"--trainer.plugins={full}"])
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].endswith("last.ckpt: No space left on device")
    checkpoints = tmp_path / "run" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["last.ckpt"]
    assert saved_step(tmp_path) == 3
    main(["fit", *args, "--ckpt_path=last"])
    assert saved_step(tmp_path) == 9


def seq2seq_process(*args: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "seq2seq.cli", *args],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


@pytest.mark.parametrize(("closed", "message"), [(0, "stdin is closed"), (1, "stdout is closed")])
def test_closed_stdin_or_stdout_is_one_line(trained, closed: int, message: str) -> None:
    process = seq2seq_process(
        "translate", "--checkpoint", str(trained.checkpoint), preexec_fn=lambda: os.close(closed)
    )
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 1
    assert (
        errors.strip().splitlines()[-1]
        == f"seq2seq: error: {message}: give --{'input' if closed == 0 else 'output'} PATH"
    )
    assert "Traceback" not in errors


def test_a_reader_that_has_gone_ends_translate_quietly(trained, tmp_path: Path) -> None:
    """`seq2seq translate ... | head -1` when head has gone: no error, as for cat (status 141)."""
    source = tmp_path / "few.de"
    source.write_text("ab cd ef\ngh ij\n")
    process = seq2seq_process(
        "translate",
        "--checkpoint",
        str(trained.checkpoint),
        "--input",
        str(source),
        stdout=subprocess.PIPE,
    )
    process.stdout.close()  # the reader is gone before the first line is written
    process.wait(timeout=300)
    errors = process.stderr.read()
    assert process.returncode == 128 + signal.SIGPIPE
    assert "Traceback" not in errors and "error" not in errors


def test_ctrl_c_in_translate_is_one_line_and_leaves_no_file(trained, tmp_path: Path) -> None:
    source, output = tmp_path / "many.de", tmp_path / "out.en"
    source.write_text("ab cd ef gh ij kl mn op qr st\n" * 20000)
    stderr = tmp_path / "stderr"
    with stderr.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "seq2seq.cli",
                "translate",
                "--checkpoint",
                str(trained.checkpoint),
                "--input",
                str(source),
                "--output",
                str(output),
            ],
            cwd=REPO,
            stderr=log,
            # Ctrl-C reaches it even where this test runs with SIGINT ignored (a background
            # job): a child inherits the ignoring, and Python then installs no handler
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 120
        while "translating" not in stderr.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # the search has started
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
    lines = stderr.read_text().replace("\r", "\n").strip().splitlines()
    assert lines[-1] == "seq2seq: interrupted" and "Traceback" not in stderr.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.de", "stderr"]  # no output


@pytest.mark.slow
def test_a_second_ctrl_c_in_training_quits_with_130(corpus: Path, tmp_path: Path) -> None:
    process = train_process(
        corpus, tmp_path, "--trainer.callbacks.every_n_train_steps=0", resume=False
    )
    wait_for_updates(tmp_path, process, 3)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 130, errors
    assert "Traceback" not in errors


def test_a_real_full_disk_while_saving(corpus: Path, tmp_path: Path) -> None:
    """Checkpoints on a 2 MiB tmpfs: the second one does not fit. One line, no temporary file
    left on the full disk, the first checkpoint whole. Needs the right to mount (root)."""
    small = tmp_path / "small"
    small.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        args = tiny_run_args(
            corpus,
            tmp_path,
            **{
                "trainer.max_steps": 9,
                "trainer.callbacks.every_n_train_steps": 3,
                "trainer.callbacks.dirpath": str(small),
            },
        )
        completed = subprocess.run(
            [sys.executable, str(REPO / "train.py"), "fit", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        errors = [line for line in completed.stderr.splitlines() if "error:" in line]
        assert completed.returncode == 1 and "Traceback" not in completed.stderr
        assert len(errors) == 1 and errors[0].endswith("last.ckpt: No space left on device")
        assert [p.name for p in small.iterdir()] == ["last.ckpt"]
        assert load_checkpoint(small / "last.ckpt")["global_step"] == 3
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
