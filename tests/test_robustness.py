"""The hostile-input suite: bad input through train.py, every seq2seq subcommand and the Python
API gives one line on stderr (or one Seq2SeqError), a non-zero exit, no traceback, and leaves no
file damaged or half-written; inputs that are merely unusual (CRLF or CR line ends, control
characters, very long lines, empty files, outputs that are links or devices) are handled.

The same cases write docs/robustness.md: `python -m tests.test_robustness` regenerates it, and
`test_docs_table_is_current` fails when the file no longer matches what the commands do.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from seq2seq import cli, lightning_cli
from seq2seq.checkpoint import load_model
from seq2seq.datamodule import TranslationDataModule
from seq2seq.decoding.search import SearchOptions
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_write, read_lines
from seq2seq.lit_module import TranslationModule
from seq2seq.model.seq2seq import Seq2SeqConfig
from seq2seq.schedules import Budget
from tests.training_helpers import RunsCode, reversal_corpus, tiny_run_args

DOC = Path(__file__).resolve().parents[1] / "docs" / "robustness.md"
LONG_LINE = " ".join(["ab cd"] * 5000)  # 10,000 words


@dataclass(frozen=True)
class Case:
    command: str  # "train.py", a seq2seq subcommand, or "Python API"
    what: str
    args: tuple[str, ...] = ()  # {w}: the workspace, {ckpt}: a trained checkpoint
    handled: bool = False  # not an error: the command succeeds
    expect: str = ""  # part of the stderr line the user sees
    note: str = ""  # for handled cases: what happens instead of an error
    call: Callable[[Path, Path], object] | None = None  # Python API cases: (workspace, ckpt)


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    message: str  # the last stderr line, the workspace path shown as <tmp>
    traceback: bool
    written: list[str]  # files under {w}/out after a failed run
    errors: int  # stderr lines that say "error:"
    damaged: list[str]  # workspace inputs whose content changed


T, TR, EV, SC = "train.py", "translate", "evaluate", "score"
PR, GF, SV, API = "prepare", "grad-flow", "serve", "Python API"
EX, SL = "export", "shortlist"
TRAIN = ("--data.corpus.train=[{w}/good]",)
SHORTLIST = "--output={w}/out/shortlist.pt"
CASES = [
    Case(T, "missing file", ("--data.corpus.train=[{w}/missing]",), expect="file not found"),
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
    Case(
        SC,
        "CR-only line ends (old Mac)",
        ("--hypotheses={w}/cr.en", "--reference={w}/good.en"),
        handled=True,
        note="scores; a lone CR ends a line like LF",
    ),
    Case(SC, "missing reference", ("--hypotheses={w}/good.en",), expect="required: --reference"),
    # train.py: settings checked when they are made, before data or model are touched
    Case(T, "dropout above 1", (*TRAIN, "--model.architecture.dropout=1.5"), expect="not 1.5"),
    Case(
        T,
        "negative dropout",
        (*TRAIN, "--model.architecture.recurrent_dropout=-0.5"),
        expect="recurrent_dropout must lie in [0, 1), not -0.5",
    ),
    Case(
        T,
        "negative learning rate",
        (*TRAIN, "--model.learning_rate=-0.001"),
        expect="learning_rate must be a positive number, not -0.001",
    ),
    Case(
        T,
        "NaN learning rate in a config file",
        (*TRAIN, "--config={w}/nan_lr.yaml"),
        expect="learning_rate must be a positive number, not nan",
    ),
    Case(
        T,
        "label smoothing of 1",
        (*TRAIN, "--model.label_smoothing=1.0"),
        expect="label_smoothing must be in [0, 1): 1.0",
    ),
    Case(
        T,
        "output rows padded to a multiple of 0",
        (*TRAIN, "--model.output_rows_multiple=0"),
        expect="output_rows_multiple must be at least 1, not 0",
    ),
    Case(
        T,
        "an output vocabulary other than targets or full",
        (*TRAIN, "--model.output_vocabulary=some"),
        expect="some",
    ),
    Case(
        T,
        "a vocabulary too small for the special ids",
        (*TRAIN, "--data.vocab_size=3"),
        expect="vocab_size must be at least 5, not 3",
    ),
    Case(T, "unknown cell type", (*TRAIN, "--model.architecture.cell_type=tcn"), expect="tcn"),
    Case(
        T,
        "a setting the chosen schedule does not read",
        (*TRAIN, "--model.scheduler=Budget", "--model.scheduler.patience=2"),
        expect="Option 'patience' is not accepted",
    ),
    Case(
        T,
        "plateau factor above 1",
        (*TRAIN, "--model.scheduler=Plateau", "--model.scheduler.factor=2"),
        expect="Plateau factor must lie in (0, 1), not 2.0",
    ),
    Case(
        T,
        "a config file that is not valid YAML",
        (*TRAIN, "--config={w}/broken.yaml"),
        expect="<tmp>/broken.yaml is not valid YAML",
    ),
    Case(T, "missing config file", (*TRAIN, "--config={w}/none.yaml"), expect="does not exist"),
    Case(
        T,
        "the Files corpus without training data",
        ("--data.corpus.train=[]",),
        expect="Files needs at least one training corpus",
    ),
    Case(T, "unknown corpus format", ("--data.corpus=Fils",), expect="Fils"),
    Case(
        T,
        "evaluation batch budget of 0",
        (*TRAIN, "--data.eval_max_tokens=0"),
        expect="eval_max_tokens must be at least 1, not 0",
    ),
    Case(
        T,
        "length ratio below 1",
        (*TRAIN, "--data.max_length_ratio=0.5"),
        expect="max_length_ratio must be at least 1, not 0.5",
    ),
    Case(
        T,
        "character coverage of 0",
        (*TRAIN, "--data.character_coverage=0"),
        expect="character_coverage must lie in (0, 1], not 0.0",
    ),
    Case(
        T,
        "checkpoint with NaN weights",
        (*TRAIN, "--ckpt_path={w}/nan.ckpt"),
        expect="refusing to load a checkpoint with non-finite weights",
    ),
    Case(
        T,
        "checkpoint without a tokenizer",
        (*TRAIN, "--ckpt_path={w}/no_tokenizer.ckpt"),
        expect="holds no tokenizer",
    ),
    Case(
        T,
        "CR-only line ends (old Mac)",
        ("--data.corpus.train=[{w}/cr]",),
        handled=True,
        note="trains; a lone CR ends a line like LF",
    ),
    Case(
        T,
        "a run shorter than its first validation",
        (
            *TRAIN,
            "--trainer.max_steps=3",
            "--trainer.limit_val_batches=1",
            "--trainer.callbacks.monitor=val/bleu",
        ),
        handled=True,
        note="trains 3 updates and saves them in last.ckpt",
    ),
    # translate: outputs are never destroyed, every input line has its output line
    Case(
        TR,
        "--output equal to --input",
        ("--input={w}/good.de", "--output={w}/good.de"),
        expect="is the input file: refusing to overwrite it",
    ),
    Case(
        TR,
        "--output a symbolic link",
        ("--output={w}/out/link.txt",),
        handled=True,
        note="writes through the link; the link stays",
    ),
    Case(
        TR,
        "--output /dev/null",
        ("--output=/dev/null",),
        handled=True,
        note="writes to the device; /dev/null stays a device",
    ),
    Case(
        TR,
        "--output /dev/full (no space)",
        ("--output=/dev/full",),
        expect="cannot write /dev/full: No space left on device",
    ),
    Case(
        TR,
        "CR-only line ends (old Mac)",
        ("--input={w}/cr.de",),
        handled=True,
        note="translates; a lone CR ends a line like LF",
    ),
    Case(
        TR,
        "control characters and Unicode line separators inside lines",
        ("--input={w}/controls.de",),
        handled=True,
        note="one output line per input line; only LF, CRLF and CR end a line",
    ),
    Case(
        TR, "--batch-tokens 0", ("--batch-tokens=0",), expect="must be a whole number of at least 1"
    ),
    Case(TR, "negative --batch-tokens", ("--batch-tokens=-5",), expect="not '-5'"),
    Case(TR, "--alpha nan", ("--alpha=nan",), expect="alpha must be a number of at least 0"),
    Case(TR, "--beam-size 0", ("--beam-size=0",), expect="beam_size must be at least 1, not 0"),
    Case(
        TR,
        "--nbest larger than the beam",
        ("--beam-size=2", "--nbest=3"),
        expect="nbest must be between 1 and 2 (beam), not 3",
    ),
    Case(TR, "--min-length -1", ("--min-length=-1",), expect="min_length must not be negative"),
    Case(
        TR,
        "--min-output-ratio above --max-output-ratio",
        ("--min-output-ratio=2", "--max-output-ratio=1.5"),
        expect="min_output_ratio must be between 0 and max_output_ratio (1.5), not 2.0",
    ),
    Case(
        TR,
        "--coverage-penalty -0.2",
        ("--coverage-penalty=-0.2",),
        expect="coverage_penalty must be a number of at least 0, not -0.2",
    ),
    Case(TR, "--max-output-offset 0", ("--max-output-offset=0",), expect="must leave room for EOS"),
    Case(TR, "unknown search strategy", ("--strategy=sampling",), expect="invalid choice"),
    Case(TR, "--device tpu", ("--device=tpu",), expect="'tpu' is not a device"),
    Case(TR, "--device cpu:abc", ("--device=cpu:abc",), expect="'cpu:abc' is not a device"),
    Case(
        TR,
        "checkpoint with NaN weights",
        ("--checkpoint={w}/nan.ckpt",),
        expect="it holds non-finite weights",
    ),
    Case(
        TR,
        "checkpoint without a tokenizer",
        ("--checkpoint={w}/no_tokenizer.ckpt",),
        expect="holds no tokenizer",
    ),
    Case(
        TR,
        "checkpoint of another model size",
        ("--checkpoint={w}/other_shape.ckpt",),
        expect="the checkpoint does not fit this model",
    ),
    Case(
        EV,
        "--device tpu",
        ("--source={w}/good.de", "--reference={w}/good.en", "--device=tpu"),
        expect="is not a device",
    ),
    Case(
        EV,
        "missing checkpoint",
        ("--source={w}/good.de", "--reference={w}/good.en", "--checkpoint={w}/none.ckpt"),
        expect="file not found",
    ),
    Case(
        EV,
        "CR-only source",
        ("--source={w}/cr.de", "--reference={w}/good.en"),
        handled=True,
        note="scores; a lone CR ends a line like LF",
    ),
    # prepare and grad-flow
    Case(PR, "misspelt option", (*TRAIN, "--data.vocab_sise=30"), expect="vocab_sise"),
    Case(
        PR,
        "the Files corpus without training data",
        ("--data.corpus.train=[]",),
        expect="Files needs at least one training corpus",
    ),
    Case(
        PR,
        "a config file that is not valid YAML",
        ("--config={w}/broken.yaml",),
        expect="is not valid YAML",
    ),
    Case(PR, "missing corpus file", ("--data.corpus.train=[{w}/missing]",), expect="not found"),
    Case(PR, "a good corpus", TRAIN, handled=True, note="prints the corpus statistics as JSON"),
    Case(GF, "--length 1", ("--length=1", "--output={w}/out/flow"), expect="at least 2"),
    Case(
        GF,
        "missing checkpoint",
        ("--checkpoint={w}/none.ckpt", "--output={w}/out/flow"),
        expect="file not found",
    ),
    Case(
        GF,
        "checkpoint with a pickle payload",
        ("--checkpoint={w}/evil.ckpt", "--output={w}/out/flow"),
        expect="refusing to load",
    ),
    Case(
        GF,
        "a config file that is not valid YAML",
        ("--config={w}/broken.yaml", "--output={w}/out/flow"),
        expect="not a train.py config",
    ),
    Case(
        GF,
        "unwritable output directory",
        ("--length=3", "--output=/proc/none"),
        expect="cannot create /proc/none",
    ),
    Case(SV, "missing checkpoint", ("--checkpoint={w}/none.ckpt", "--port=0"), expect="not found"),
    Case(
        SV,
        "checkpoint with a pickle payload",
        ("--checkpoint={w}/evil.ckpt", "--port=0"),
        expect="refusing to load",
    ),
    Case(SV, "a port past 65535", ("--checkpoint={ckpt}", "--port=70000"), expect="cannot listen"),
    Case(
        SV,
        "a beam limit below the checkpoint's own beam",
        ("--checkpoint={ckpt}", "--port=0", "--max-beam=2"),
        expect="is past --max-beam 2 or --max-nbest 16",
    ),
    Case(
        EX,
        "missing checkpoint",
        ("--checkpoint={w}/none.ckpt", "--output={w}/out/export"),
        expect="not found",
    ),
    Case(
        EX,
        "checkpoint with a pickle payload",
        ("--checkpoint={w}/evil.ckpt", "--output={w}/out/export"),
        expect="refusing to load",
    ),
    Case(
        EX,
        "an opset the exporter cannot write",
        ("--checkpoint={ckpt}", "--output={w}/out/export", "--opset=12"),
        expect="opset 12 is not supported: use 18 to",
    ),
    Case(
        EX,
        "output is a file",
        ("--checkpoint={ckpt}", "--output={w}/good.de"),
        expect="is a file: give a directory",
    ),
    Case(
        TR,
        "--model: a directory that holds no export",
        ("--model={w}/dir.de",),
        expect="is not a seq2seq export: seq2seq_export.json, encoder.onnx",
    ),
    Case(
        TR,
        "--engine onnxruntime on cuda",
        ("--model={w}/dir.de", "--device=cuda"),
        expect="--engine onnxruntime runs on cpu, not --device cuda",
    ),
    Case(
        TR,
        "--shortlist: a file that is not one",
        ("--shortlist={w}/good.de",),
        expect="cannot read shortlist <tmp>/good.de: truncated or not a shortlist",
    ),
    Case(
        TR,
        "--shortlist with an export",
        ("--model={w}/dir.de", "--shortlist={w}/good.de"),
        expect="the onnxruntime engine searches every word: drop --shortlist",
    ),
    Case(
        SL,
        "source and target of different line counts",
        ("--checkpoint={ckpt}", "--source={w}/uneven.de", "--target={w}/uneven.en", SHORTLIST),
        expect="<tmp>/uneven.de has 3 lines, <tmp>/uneven.en has 2",
    ),
    Case(
        SL,
        "a source file without a target file",
        ("--checkpoint={ckpt}", "--source={w}/good.de", SHORTLIST),
        expect="give --source and --target, or neither (the training corpus)",
    ),
    Case(
        SL,
        "missing target file",
        ("--checkpoint={ckpt}", "--source={w}/good.de", "--target={w}/none.en", SHORTLIST),
        expect="not found",
    ),
    Case(
        SL,
        "no candidates per source word",
        (
            "--checkpoint={ckpt}",
            "--source={w}/good.de",
            "--target={w}/good.en",
            "--per-word=0",
            SHORTLIST,
        ),
        expect="must be a whole number of at least 1, not '0'",
    ),
    Case(
        SL,
        "a negative number of frequent words",
        (
            "--checkpoint={ckpt}",
            "--source={w}/good.de",
            "--target={w}/good.en",
            "--frequent=-1",
            SHORTLIST,
        ),
        expect="--frequent must be 0 or more, not -1",
    ),
]


def api(what: str, expect: str, call: Callable[[Path, Path], object], note: str = "") -> Case:
    """A Python API case: `call(workspace, checkpoint)` raises one Seq2SeqError (or, handled,
    returns)."""
    return Case(API, what, expect=expect, call=call, handled=bool(note), note=note)


def one_line_each(texts: list[str], count: int) -> None:
    assert len(texts) == count and all(len(text.splitlines()) <= 1 for text in texts), texts


CONTROLS = ["ab\x0bcd", "ef\x0cgh", "ij\x1ckl", "mn\x85op", "qr\u2028st", "uv\u2029wx", "ab\x00cd"]
CASES += [
    api("Translator of a missing checkpoint", "file not found", lambda w, c: translator(w / "x")),
    api(
        "Translator in an unknown precision",
        "precision must be one of auto, fp32, bf16, not fp8",
        lambda w, c: translator(c, precision="fp8"),
    ),
    api(
        "Translator on a device that does not exist",
        "'tpu' is not a device",
        lambda w, c: translator(c, device="tpu"),
    ),
    api(
        "load_model of a truncated file",
        "truncated or not a checkpoint",
        lambda w, c: load_model(w / "truncated.ckpt"),
    ),
    api("load_model of NaN weights", "non-finite weights", lambda w, c: load_model(w / "nan.ckpt")),
    api(
        "load_model of a pickle payload",
        "refusing to load",
        lambda w, c: load_model(w / "evil.ckpt"),
    ),
    api(
        "SearchOptions with a beam of 0",
        "beam_size must be at least 1, not 0",
        lambda w, c: SearchOptions(beam_size=0),
    ),
    api(
        "Seq2SeqConfig with dropout 1.5",
        "dropout must lie in [0, 1), not 1.5",
        lambda w, c: Seq2SeqConfig(dropout=1.5),
    ),
    api(
        "TranslationModule with a negative learning rate",
        "learning_rate must be a positive number, not -1",
        lambda w, c: TranslationModule(learning_rate=-1),
    ),
    api(
        "Budget decaying over more than the budget",
        "decay_fraction must lie in (0, 1], got 2",
        lambda w, c: Budget(decay_fraction=2),
    ),
    api(
        "TranslationDataModule with a batch smaller than a pair",
        "max_tokens 50 cannot hold a pair of max_length 100",
        lambda w, c: TranslationDataModule(max_tokens=50),
    ),
    api(
        "read_lines of a binary file",
        "line 1 is not valid UTF-8",
        lambda w, c: list(read_lines(w / "binary.de")),
    ),
    api(
        "atomic_write to a directory",
        "output path is a directory",
        lambda w, c: atomic_write(w / "dir.de").__enter__(),
    ),
    api(
        "translate lines with control characters",
        "",
        lambda w, c: one_line_each(translator(c).translate(CONTROLS, 1), len(CONTROLS)),
        note="one line out per line in, no line break inside",
    ),
    api(
        "translate empty and blank lines",
        "",
        lambda w, c: one_line_each(translator(c).translate(["", " ", "ab"], 1), 3),
        note="empty lines stay empty",
    ),
]


def translator(path: Path, **options: str) -> object:
    from seq2seq.translator import Translator

    return Translator.from_checkpoint(path, **options)


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
    for side, lines in (("de", good), ("en", good_en)):
        (work / f"cr.{side}").write_bytes("".join(x + "\r" for x in lines).encode())
    (work / "controls.de").write_text("".join(x + "\n" for x in CONTROLS), encoding="utf-8")
    (work / "typo.yaml").write_text("model:\n  learnin_rate: 0.1\n")
    (work / "nan_lr.yaml").write_text("model:\n  learning_rate: .nan\n")
    (work / "broken.yaml").write_text("model:\n  learning_rate: [0.1\n")
    (work / "out").mkdir()
    (work / "out" / "target.txt").write_text("to be replaced through the link\n")
    (work / "out" / "link.txt").symlink_to(work / "out" / "target.txt")
    if checkpoint is None:
        one_update = tiny_run_args(work / "corpus", work, **{"trainer.max_steps": 1})
        lightning_cli.main(["fit", *one_update])
        checkpoint = work / "run" / "checkpoints" / "last.ckpt"
    (work / "truncated.ckpt").write_bytes(checkpoint.read_bytes()[:5000])
    evil = torch.load(checkpoint, weights_only=True)
    evil["hyper_parameters"]["note"] = RunsCode(work / "payload-ran")
    torch.save(evil, work / "evil.ckpt")
    broken_copies(checkpoint, work)
    return work, checkpoint


def broken_copies(checkpoint: Path, work: Path) -> None:
    """nan.ckpt (a NaN weight), no_tokenizer.ckpt, other_shape.ckpt (a weight of another size)."""
    changes = {
        "nan": lambda c: (
            c["state_dict"]["model.decoder.bridge.weight"].view(-1)[:1].fill_(float("nan"))
        ),
        "no_tokenizer": lambda c: c.pop("seq2seq_tokenizer"),
        "other_shape": lambda c: c["state_dict"].update(
            {"model.decoder.bridge.bias": torch.zeros(3)}
        ),
    }
    for name, change in changes.items():
        copy = torch.load(checkpoint, weights_only=True)
        change(copy)
        torch.save(copy, work / f"{name}.ckpt")


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
        if "--model" in given:  # an export instead of the checkpoint
            given.add("--checkpoint")
        extra = [f"{k}={v}" for k, v in defaults.items() if k not in given]
        return [TR, *extra, *args]
    if case.command == PR:
        return [PR, *data_args(work), *args]
    extra = [f"--checkpoint={checkpoint}"] if case.command == EV else []
    return [case.command, *extra, *args]


def data_args(work: Path) -> list[str]:
    """A tiny run's options as `seq2seq prepare` takes them (the corpus in {w}/corpus)."""
    base = tiny_run_args(work / "corpus", work / "out", **{"trainer.max_steps": 1})
    return [*base, "--data.data_dir=" + str(work / "data")]


def run(case: Case, work: Path, checkpoint: Path) -> Outcome:
    before, inputs = set((work / "out").rglob("*")), fingerprints(work)
    stderr, stdout = io.StringIO(), io.StringIO()
    exit_code = 0
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        try:
            if case.call is not None:
                case.call(work, checkpoint)
            else:
                main = lightning_cli.main if case.command == T else cli.main
                main(argv(case, work, checkpoint))
        except SystemExit as exit_info:
            exit_code = exit_info.code
        except Seq2SeqError as error:  # the Python API's one exception for users
            print(f"Seq2SeqError: {error}", file=sys.stderr)
            exit_code = 1
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    said = [line for line in lines if any(m in line for m in ("error:", "Error:", "warning:"))]
    message = (said or lines[-1:] or [""])[-1].replace(str(work), "<tmp>")
    written = sorted(
        str(p.relative_to(work)) for p in set((work / "out").rglob("*")) - before if p.is_file()
    )
    damaged = sorted(k for k, v in fingerprints(work).items() if inputs.get(k, v) != v)
    errors = sum("error:" in line or "Error:" in line for line in lines)
    return Outcome(exit_code, message, "Traceback" in stderr.getvalue(), written, errors, damaged)


def fingerprints(work: Path) -> dict[str, str]:
    """SHA-256 of every input file of the workspace (outputs, data and runs left out)."""
    generated = ("out", "data", "run")
    return {
        str(path.relative_to(work)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in work.rglob("*")
        if path.is_file() and path.relative_to(work).parts[0] not in generated
    }


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
    assert outcome.damaged == []  # no input file changed
    if case.handled:
        assert outcome.exit_code == 0, outcome.message
    else:
        assert outcome.exit_code == 1
        assert outcome.message.startswith(("train.py: error: ", "seq2seq: error: ", "Seq2SeqError"))
        assert outcome.errors == 1  # one line
        assert outcome.written == [] or all(".ckpt" not in w for w in outcome.written)
        assert not any(w.endswith("translation.txt") for w in outcome.written)
        assert not any(".partial" in w for w in outcome.written)
    assert case.expect in outcome.message


def render(outcomes: dict[Case, Outcome]) -> str:
    rows = [
        "# What each command does with bad input",
        "",
        "Generated by `python -m tests.test_robustness` from the cases in tests/test_robustness.py",
        "(CI checks that this file matches what the commands do). Every error is one line on",
        "stderr with exit status 1 and no traceback (from Python: one `Seq2SeqError`); no input",
        "file is changed and no output or checkpoint file is left behind, whole or in part.",
        "`<tmp>` stands for the test's scratch directory.",
        "",
        "| command | input | exit | what the user sees on stderr |",
        "| --- | --- | --- | --- |",
    ]
    for case, outcome in outcomes.items():
        shown = "" if case.handled else f"`{outcome.message}`"
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
