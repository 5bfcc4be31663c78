"""Checkpoint averaging: the element-wise mean of several checkpoints' weights, which usually
translates better than any one of them (Junczys-Dowmunt et al., 2016; Vaswani et al., 2017).

The checkpoints must be of one model: the same architecture, tokenizer and tensors. The mean is
taken in float64 and cast back to each tensor's type. The result is a normal checkpoint without
optimizer state: every command that reads a checkpoint reads it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import TOKENIZER_KEY, check_finite, load_checkpoint
from seq2seq.errors import Seq2SeqError

KEPT = (  # what the average takes from the first checkpoint, unchanged
    "hyper_parameters",
    "hparams_name",
    "datamodule_hyper_parameters",
    "datamodule_hparams_name",
    "pytorch-lightning_version",
    TOKENIZER_KEY,
)


@dataclass(frozen=True)
class SavedCheckpoint:
    """A checkpoint file of a run, the update it holds and, for `best`, its score."""

    path: Path
    step: int
    score: float | None = None  # on the metric `best` ranked by


def average_checkpoints(paths: list[Path]) -> dict[str, Any]:
    """The checkpoint whose weights are the mean of those at `paths` (loaded one at a time)."""
    if not paths:
        raise Seq2SeqError("nothing to average: no checkpoints given")
    first = load_checkpoint(paths[0])
    sums = {name: tensor.double() for name, tensor in first["state_dict"].items()}
    last_step = (first.get("global_step", 0), first.get("epoch", 0))
    for path in paths[1:]:
        checkpoint = load_checkpoint(path)
        check_same_model(first, paths[0], checkpoint, path)
        for name, tensor in checkpoint["state_dict"].items():
            sums[name] += tensor.double()
        last_step = max(last_step, (checkpoint.get("global_step", 0), checkpoint.get("epoch", 0)))
    state = {
        name: (total / len(paths)).to(first["state_dict"][name].dtype)
        if first["state_dict"][name].is_floating_point()
        else first["state_dict"][name]
        for name, total in sums.items()
    }
    check_finite(state, doing="save an average of")
    averaged = {key: first[key] for key in KEPT if key in first}
    averaged |= {
        "state_dict": state,
        "global_step": last_step[0],
        "epoch": last_step[1],
        "averaged_from": [str(path) for path in paths],
    }
    return averaged


def check_same_model(
    first: dict[str, Any], first_path: Path, other: dict[str, Any], other_path: Path
) -> None:
    """A one-line error naming what differs when two checkpoints are not of one model."""
    mine = first["hyper_parameters"].get("architecture", {})
    theirs = other["hyper_parameters"].get("architecture", {})
    differing = [
        f"{key} {mine.get(key)!r} vs {theirs.get(key)!r}"
        for key in sorted(set(mine) | set(theirs))
        if mine.get(key) != theirs.get(key)
    ]
    if differing:
        raise Seq2SeqError(
            f"{first_path} and {other_path} have different architectures: {', '.join(differing)}"
        )
    if first.get(TOKENIZER_KEY) != other.get(TOKENIZER_KEY):
        raise Seq2SeqError(
            f"{first_path} and {other_path} were trained with different tokenizers"
            " (another corpus or vocabulary)"
        )
    names, other_names = set(first["state_dict"]), set(other["state_dict"])
    if names != other_names:
        odd = sorted(names ^ other_names)
        raise Seq2SeqError(
            f"{first_path} and {other_path} hold different tensors ({', '.join(odd[:3])})"
        )
    for name, tensor in first["state_dict"].items():
        if other["state_dict"][name].shape != tensor.shape:
            raise Seq2SeqError(
                f"{first_path} and {other_path} differ in {name}: {tuple(tensor.shape)} vs"
                f" {tuple(other['state_dict'][name].shape)}"
            )
        if not tensor.is_floating_point() and not torch.equal(other["state_dict"][name], tensor):
            raise Seq2SeqError(  # e.g. the target words scored: another training corpus
                f"{first_path} and {other_path} differ in {name}, which is not averaged"
                " (trained on other corpora?)"
            )


def saved_checkpoints(run: Path) -> list[SavedCheckpoint]:
    """The checkpoint files in `run/checkpoints` (or `run` itself), one per update (a `last.ckpt`
    that repeats a kept update is left out, links such as `best.ckpt` too), oldest first."""
    directory = checkpoint_directory(run)
    files = [path for path in directory.glob("*.ckpt") if not path.is_symlink()]  # best.ckpt
    by_step: dict[int, SavedCheckpoint] = {}
    for path in sorted(files, key=lambda p: (p.name == "last.ckpt", p.name)):
        step = int(load_checkpoint(path, mmap=True).get("global_step", 0))
        by_step.setdefault(step, SavedCheckpoint(path, step))
    if not by_step:
        raise Seq2SeqError(f"{directory} holds no checkpoints (*.ckpt)")
    return [by_step[step] for step in sorted(by_step)]


def checkpoint_directory(run: Path) -> Path:
    """A run's checkpoint directory: `run/checkpoints`, or `run` when it holds them itself."""
    return run / "checkpoints" if (run / "checkpoints").is_dir() else run


def last(saved: list[SavedCheckpoint], count: int) -> list[SavedCheckpoint]:
    """The `count` latest checkpoints."""
    _check_enough(len(saved), count, "")
    return saved[-count:]


def best(saved: list[SavedCheckpoint], count: int, monitor: str) -> list[SavedCheckpoint]:
    """The `count` best checkpoints on `monitor`, best first, as the ModelCheckpoint that kept
    them recorded in the newest checkpoint (its top-k: a later `last.ckpt` whose update was
    never validated is not among them)."""
    newest = load_checkpoint(saved[-1].path, mmap=True)
    directory = saved[-1].path.parent
    for key, state in newest.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint{") and state.get("monitor") == monitor:
            mode = ast.literal_eval(key.removeprefix("ModelCheckpoint")).get("mode", "min")
            kept = state.get("best_k_models", {})
            break
    else:
        raise Seq2SeqError(f"{saved[-1].path} records no checkpoints kept by {monitor}")
    ranked = sorted(kept.items(), key=lambda item: float(item[1]), reverse=mode == "max")
    present = [(directory / Path(name).name, float(score)) for name, score in ranked]
    present = [(path, score) for path, score in present if path.is_file()]
    _check_enough(len(present), count, f" by {monitor}")
    steps = {checkpoint.path: checkpoint.step for checkpoint in saved}
    return [SavedCheckpoint(path, steps.get(path, -1), score) for path, score in present[:count]]


def _check_enough(available: int, count: int, kind: str) -> None:
    if count < 1 or count > available:
        raise Seq2SeqError(
            f"cannot take {count} checkpoints: the run keeps {available}{kind}"
            " (ModelCheckpoint's save_top_k sets how many)"
        )
