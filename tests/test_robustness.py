"""Bad input through every command: one line on stderr, non-zero exit, no traceback, nothing
half-written; inputs that are merely unusual (CRLF, very long lines, empty files) are handled.

The same cases write docs/robustness.md: `python -m tests.test_robustness` regenerates it, and
`test_docs_table_is_current` fails when the file no longer matches what the commands do.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from seq2seq import cli, lightning_cli
from tests.training_helpers import RunsCode, reversal_corpus, tiny_run_args

DOC = Path(__file__).resolve().parents[1] / "docs" / "robustness.md"
LONG_LINE = " ".join(["ab cd"] * 5000)  # 10,000 words


@dataclass(frozen=True)
class Case:
    command: str  # "train.py", "translate", "evaluate" or "score"
    what: str
    args: tuple[str, ...]  # {w}: the workspace, {ckpt}: a trained checkpoint
    handled: bool = False  # not an error: the command succeeds
    expect: str = ""  # part of the stderr line the user sees
    note: str = ""  # for handled cases: what happens instead of an error


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    message: str  # the last stderr line, the workspace path shown as <tmp>
    traceback: bool
    written: list[str]  # files under {w}/out after a failed run


T, TR, EV, SC = "train.py", "translate", "evaluate", "score"
TRAIN = ("--data.corpus.train=[{w}/good]",)
CASES = [
    Case(
        T, "missing file", ("--data.corpus.train=[{w}/missing]",), expect="file not found"
    ),
    Case(
        T,
        "a directory where a file is expected",
        ("--data.corpus.train=[{w}/dir]",),
        expect="expected a file but found a directory",
    ),
    Case(T, "empty corpus", ("--data.corpus.train=[{w}/empty]",), expect="corpus is empty"),
    Case(
        T,
        "binary / non-UTF-8 bytes",
        ("--data.corpus.train=[{w}/binary]",),
        expect="not valid UTF-8",
    ),
    Case(
        T,
        "CRLF line endings",
        ("--data.corpus.train=[{w}/crlf]",),
        handled=True,
        note="trains; line ends stripped",
    ),
    Case(
        T,
        "a 10,000-token line",
        ("--data.corpus.train=[{w}/long]",),
        handled=True,
        note="trains; the pair is dropped as too long and counted in the log",
    ),
    Case(
        T,
        "source and target of different lengths",
        ("--data.corpus.train=[{w}/uneven]",),
        expect="line counts differ",
    ),
    Case(
        T,
        "unknown config key",
        (*TRAIN, "--model.learnin_rate=0.1"),
        expect="unrecognized arguments",
    ),
    Case(
        T,
        "mistyped config value",
        (*TRAIN, "--trainer.max_steps=many"),
        expect="Expected a <class 'int'>",
    ),
    Case(
        T,
        "learning-rate decay over more than the whole budget",
        (*TRAIN, "--model.scheduler=Budget", "--model.scheduler.decay_fraction=1.5"),
        expect="decay_fraction must lie in (0, 1]",
    ),
    Case(
        T,
        "misspelt key in a config file",
        (*TRAIN, "--config={w}/typo.yaml"),
        expect="learnin_rate",
    ),
    Case(
        T,
        "checkpoint from another vocabulary than the data",
        (*TRAIN, "--data.vocab_size=30", "--ckpt_path={ckpt}"),
        expect="the checkpoint does not fit this model",
    ),
    Case(
        T,
        "truncated checkpoint",
        (*TRAIN, "--ckpt_path={w}/truncated.ckpt"),
        expect="truncated or not a checkpoint",
    ),
    Case(
        T,
        "checkpoint with a pickle payload",
        (*TRAIN, "--ckpt_path={w}/evil.ckpt"),
        expect="refusing to load",
    ),
    Case(
        T,
        "CUDA asked for on a machine without it",
        (*TRAIN, "--trainer.accelerator=cuda"),
        expect="CUDAAccelerator` can not run",
    ),
    Case(
        T,
        "unwritable output directory",
        (*TRAIN, "--trainer.default_root_dir=/proc/none"),
        expect="cannot create /proc/none",
    ),
    Case(TR, "missing input file", ("--input={w}/missing.de",), expect="file not found"),
    Case(
        TR,
        "a directory as input",
        ("--input={w}/dir.de",),
        expect="expected a file but found a directory",
    ),
    Case(
        TR,
        "empty input",
        ("--input={w}/empty.de",),
        handled=True,
        note="writes an empty translation file",
    ),
    Case(TR, "binary / non-UTF-8 input", ("--input={w}/binary.de",), expect="not valid UTF-8"),
    Case(
        TR,
        "CRLF line endings",
        ("--input={w}/crlf.de",),
        handled=True,
        note="translates; line ends stripped",
    ),
    Case(
        TR,
        "a 10,000-token line",
        ("--input={w}/long.de",),
        handled=True,
        expect="were truncated",
        note="translates the first 250 subwords",
    ),
    Case(TR, "missing checkpoint", ("--checkpoint={w}/missing.ckpt",), expect="file not found"),
    Case(
        TR,
        "a directory as checkpoint",
        ("--checkpoint={w}/dir.de",),
        expect="expected a file but found a directory",
    ),
    Case(
        TR,
        "truncated checkpoint",
        ("--checkpoint={w}/truncated.ckpt",),
        expect="truncated or not a checkpoint",
    ),
    Case(
        TR,
        "checkpoint with a pickle payload",
        ("--checkpoint={w}/evil.ckpt",),
        expect="refusing to load",
    ),
    Case(
        TR,
        "not a checkpoint at all",
        ("--checkpoint={w}/good.de",),
        expect="truncated or not a checkpoint",
    ),
    Case(TR, "--device cuda without CUDA", ("--device=cuda",), expect="CUDA is not available"),
    Case(
        TR,
        "unwritable output path",
        ("--output=/proc/none/out.txt",),
        expect="cannot write to /proc/none",
    ),
    Case(TR, "mistyped option", ("--beem-size=5",), expect="unrecognized arguments: --beem-size=5"),
    Case(
        EV,
        "source and reference of different lengths",
        ("--source={w}/uneven.de", "--reference={w}/uneven.en"),
        expect="has 3 lines",
    ),
    Case(
        EV,
        "missing reference",
        ("--source={w}/good.de", "--reference={w}/missing.en"),
        expect="file not found",
    ),
    Case(
        EV,
        "binary reference",
        ("--source={w}/good.de", "--reference={w}/binary.en"),
        expect="not valid UTF-8",
    ),
    Case(
        EV,
        "empty source and reference",
        ("--source={w}/empty.de", "--reference={w}/empty.en"),
        expect="nothing to score",
    ),
    Case(
        SC,
        "hypotheses and reference of different lengths",
        ("--hypotheses={w}/good.en", "--reference={w}/uneven.en"),
        expect="hypotheses but 2 references",
    ),
    Case(
        SC,
        "missing hypotheses",
        ("--hypotheses={w}/missing.en", "--reference={w}/good.en"),
        expect="file not found",
    ),
    Case(
        SC,
        "a directory as reference",
        ("--hypotheses={w}/good.en", "--reference={w}/dir.de"),
        expect="expected a file but found a directory",
    ),
    Case(
        SC,
        "binary hypotheses",
        ("--hypotheses={w}/binary.en", "--reference={w}/good.en"),
        expect="not valid UTF-8",
    ),
    Case(
        SC,
        "empty files",
        ("--hypotheses={w}/empty.en", "--reference={w}/empty.en"),
        expect="nothing to score",
    ),
    Case(
        SC,
        "CRLF line endings",
        ("--hypotheses={w}/crlf.en", "--reference={w}/good.en"),
        handled=True,
        note="scores; line ends stripped",
    ),
]


def make_workspace(work: Path, checkpoint: Path | None = None) -> tuple[Path, Path]:
    """Corpora good and bad, a trained checkpoint (vocabulary 40; trained here for one update
    unless given) and broken copies of it."""
    reversal_corpus(work / "corpus", train_pairs=300)
    good = (work / "corpus" / "train.de").read_text().splitlines()[:200]
    good_en = (work / "corpus" / "train.en").read_text().splitlines()[:200]
    files = {
        "good": (good, good_en),
        "crlf": (good, good_en),
        "long": ([*good, LONG_LINE], [*good_en, "ab"]),
        "uneven": (good[:3], good_en[:2]),
        "empty": ([], []),
    }
    for name, (src, tgt) in files.items():
        newline = "\r\n" if name == "crlf" else "\n"
        for side, lines in (("de", src), ("en", tgt)):
            (work / f"{name}.{side}").write_bytes("".join(x + newline for x in lines).encode())
    for side in ("de", "en"):
        (work / f"binary.{side}").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01")
        (work / f"dir.{side}").mkdir()
    (work / "typo.yaml").write_text("model:\n  learnin_rate: 0.1\n")
    (work / "out").mkdir()
    if checkpoint is None:
        one_update = tiny_run_args(work / "corpus", work, **{"trainer.max_steps": 1})
        lightning_cli.main(["fit", *one_update])
        checkpoint = work / "run" / "checkpoints" / "last.ckpt"
    (work / "truncated.ckpt").write_bytes(checkpoint.read_bytes()[:5000])
    evil = torch.load(checkpoint, weights_only=True)
    evil["hyper_parameters"]["note"] = RunsCode(work / "payload-ran")
    torch.save(evil, work / "evil.ckpt")
    return work, checkpoint


def argv(case: Case, work: Path, checkpoint: Path) -> list[str]:
    args = [a.format(w=work, ckpt=checkpoint) for a in case.args]
    if case.command == T:
        base = tiny_run_args(
            work / "corpus",
            work / "out",
            **{"trainer.max_steps": 1, "trainer.limit_val_batches": 0},
        )
        return ["fit", *base, "--data.data_dir=" + str(work / "data"), *args]
    if case.command == TR:
        defaults = {
            "--checkpoint": str(checkpoint),
            "--input": str(work / "good.de"),
            "--output": str(work / "out" / "translation.txt"),
        }
        given = {a.split("=")[0] for a in args}
        extra = [f"{k}={v}" for k, v in defaults.items() if k not in given]
        return [TR, *extra, *args]
    extra = [f"--checkpoint={checkpoint}"] if case.command == EV else []
    return [case.command, *extra, *args]


def run(case: Case, work: Path, checkpoint: Path) -> Outcome:
    before = set((work / "out").rglob("*"))
    stderr, stdout = io.StringIO(), io.StringIO()
    exit_code = 0
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        try:
            main = lightning_cli.main if case.command == T else cli.main
            main(argv(case, work, checkpoint))
        except SystemExit as exit_info:
            exit_code = exit_info.code
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    said = [line for line in lines if "error:" in line or "warning:" in line] or lines[-1:]
    message = said[-1].replace(str(work), "<tmp>") if said else ""
    written = sorted(
        str(p.relative_to(work)) for p in set((work / "out").rglob("*")) - before if p.is_file()
    )
    return Outcome(exit_code, message, "Traceback" in stderr.getvalue(), written)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, trained) -> dict[Case, Outcome]:
    work, checkpoint = make_workspace(tmp_path_factory.mktemp("robustness"), trained.checkpoint)
    results = {case: run(case, work, checkpoint) for case in CASES}
    assert not (work / "payload-ran").exists()
    return results


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.command}: {c.what}")
def test_bad_input_is_one_clear_line(outcomes: dict[Case, Outcome], case: Case) -> None:
    outcome = outcomes[case]
    assert not outcome.traceback
    if case.handled:
        assert outcome.exit_code == 0, outcome.message
    else:
        assert outcome.exit_code == 1
        assert outcome.message.startswith(("train.py: error: ", "seq2seq: error: "))
        assert outcome.written == [] or all(".ckpt" not in w for w in outcome.written)
        assert not any(w.endswith("translation.txt") for w in outcome.written)
    assert case.expect in outcome.message


def render(outcomes: dict[Case, Outcome]) -> str:
    rows = [
        "# What each command does with bad input",
        "",
        "Generated by `python -m tests.test_robustness` from the cases in tests/test_robustness.py",
        "(CI checks that this file matches what the commands do). Every error is one line on",
        "stderr with exit status 1 and no traceback; no output or checkpoint file is left behind.",
        "`<tmp>` stands for the test's scratch directory.",
        "",
        "| command | input | exit | what the user sees on stderr |",
        "| --- | --- | --- | --- |",
    ]
    for case, outcome in outcomes.items():
        shown = f"`{outcome.message}`" if "error:" in outcome.message else ""
        if case.handled:
            warning = f"`{outcome.message}`; " if "warning:" in outcome.message else ""
            shown = f"{warning}{case.note} (handled, not an error)"
        rows.append(f"| {case.command} | {case.what} | {outcome.exit_code} | {shown} |")
    return "\n".join(rows) + "\n"


def test_docs_table_is_current(outcomes: dict[Case, Outcome]) -> None:
    assert DOC.read_text() == render(outcomes), "run: python -m tests.test_robustness"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        work, checkpoint = make_workspace(Path(scratch))
        DOC.write_text(render({case: run(case, work, checkpoint) for case in CASES}))
    print(f"wrote {DOC}", file=sys.stderr)
