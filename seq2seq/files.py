"""Files every layer reads and writes: checked inputs, created directories, atomic writes.

`atomic_write` is the one way seq2seq writes a file: into a temporary file beside the target,
flushed and fsynced, given the permissions a newly created file gets (0666 less the umask),
renamed over the target, and the rename made durable. A crash or kill at any moment leaves the
previous file whole or the new one complete, never a truncated one; an error removes the
temporary file.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from seq2seq.errors import Seq2SeqError

TEMPORARY_SUFFIX = ".partial"
_GZIP_MAGIC = b"\x1f\x8b"
_READ_ERRORS = (OSError, EOFError, zlib.error)


def check_file(path: str | Path) -> Path:
    """The path as a `Path` when it names a readable regular file; a `Seq2SeqError` otherwise."""
    path = Path(path)
    if not path.exists():
        raise Seq2SeqError(f"file not found: {path}")
    if path.is_dir():
        raise Seq2SeqError(f"expected a file but found a directory: {path}")
    return path


def make_directory(path: str | Path) -> Path:
    """An output directory, created if need be; a `Seq2SeqError` if it cannot be written to."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Seq2SeqError(f"cannot create {path}: {error.strerror}") from error
    if not os.access(path, os.W_OK):
        raise Seq2SeqError(f"cannot write to {path}: permission denied")
    return path


def read_lines(path: str | Path) -> Iterator[str]:
    """Yield the lines of a plain or gzipped UTF-8 file without their line endings (LF or CRLF)."""
    path = check_file(path)
    number = 0
    try:
        with _open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                yield _decode(raw, path, number)
    except _READ_ERRORS as error:
        raise Seq2SeqError(f"cannot read {path} after line {number}: {error}") from error


def _open_binary(path: Path) -> BinaryIO:
    handle = path.open("rb")
    if handle.peek(2)[:2] == _GZIP_MAGIC:  # by content, so `train.de` may be gzipped too
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    return handle


def _decode(raw: bytes, path: Path, number: int) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise Seq2SeqError(
            f"{path}: line {number} is not valid UTF-8 (byte {error.start + 1})"
        ) from error


@contextlib.contextmanager
def atomic_write(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """Write `path` through a temporary file: `with atomic_write(path) as out: out.write(...)`.

    Text is UTF-8. The parent directory must exist. An `OSError` (no space, no permission)
    becomes a `Seq2SeqError` naming the file; any error or interrupt removes the temporary file
    and leaves `path` as it was.
    """
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX
        )
    except OSError as error:
        raise Seq2SeqError(f"cannot write to {path.parent}: {error.strerror}") from error
    try:
        mode, encoding = ("wb", None) if binary else ("w", "utf-8")
        with os.fdopen(descriptor, mode, encoding=encoding) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o666 & ~_umask())
        os.replace(temporary, path)
    except OSError as error:
        raise Seq2SeqError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        Path(temporary).unlink(missing_ok=True)
    _sync_directory(path.parent)


def _umask() -> int:
    """The process's umask, read without changing it where /proc tells it (Linux 4.7+)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
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
