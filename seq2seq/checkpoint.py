"""Checkpoint files: written atomically, read safely.

- Saving writes `<name>.partial` in the same directory, flushes it to disk and renames it over
  `<name>`: a process killed during a save leaves the previous file whole, never a truncated one.
- Loading uses `torch.load(weights_only=True)`: tensors and plain types only. A checkpoint
  carrying a pickled object that would run code is refused before anything in it runs. Our own
  metadata (hyperparameters, tokenizer models) is stored as plain types for that reason.
- Every way a file can be wrong (missing, truncated, not a checkpoint) is a `Seq2SeqError`.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

from seq2seq.data.corpus import check_file
from seq2seq.errors import Seq2SeqError

PARTIAL_SUFFIX = ".partial"


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """torch.save `checkpoint` to `path` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with partial.open("wb") as out:
        torch.save(checkpoint, out)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)
    _sync_directory(path.parent)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint at `path`, loaded with weights_only=True; a clear error if it cannot be."""
    check_file(path)
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; a cut one has no index
        raise Seq2SeqError(f"cannot read checkpoint {path}: truncated or not a checkpoint")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise Seq2SeqError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain"
            " values, which could run code (only weights_only checkpoints are accepted)"
        ) from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise Seq2SeqError(
            f"cannot read checkpoint {path}: truncated or not a checkpoint"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise Seq2SeqError(f"{path} is not a seq2seq checkpoint (no state_dict)")
    return checkpoint


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class SafeCheckpointIO(CheckpointIO):
    """Lightning's checkpoint I/O through `save_checkpoint` and `load_checkpoint` above."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        save_checkpoint(checkpoint, path)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location if map_location is not None else "cpu")

    def remove_checkpoint(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)
