"""Files every layer reads and writes: checked inputs, created directories, atomic writes.

`atomic_write` is the one way seq2seq writes a file: into a temporary file beside the target,
flushed and fsynced, given the target's permissions (a new file: 0666 less the umask), renamed
over the target, and the rename made durable. A crash or kill at any moment leaves the previous
file whole or the new one complete, never a truncated one; an error removes the temporary file.
Devices and pipes are written directly, symbolic links through to their target.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
import tempfile
import zlib
from collections.abc import Iterable, Iterator
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
    """Yield the lines of a plain or gzipped UTF-8 file without their line ends (LF, CRLF or a
    lone CR)."""
    path = check_file(path)
    number = 0
    try:
        with _open_binary(path) as handle:
            for number, line in enumerate(decode_lines(handle, str(path)), start=1):  # noqa: B007
                yield line
    except _READ_ERRORS as error:
        raise Seq2SeqError(f"cannot read {path} after line {number}: {error}") from error


def decode_lines(chunks: Iterable[bytes], name: str) -> Iterator[str]:
    """UTF-8 lines of a byte stream read by LF (`for chunk in file`), split at LF, CRLF and a
    lone CR (old Mac files) alike, and at nothing else: a line separator inside a line of a
    parallel corpus must not shift it against the other side. `name` is for errors."""
    number = 0
    for chunk in chunks:
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        body = body[:-1] if body.endswith(b"\r") else body
        for raw in body.split(b"\r"):
            number += 1
            yield _decode(raw, name, number)


def _open_binary(path: Path) -> BinaryIO:
    handle = path.open("rb")
    if handle.peek(2)[:2] == _GZIP_MAGIC:  # by content, so `train.de` may be gzipped too
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    return handle


def _decode(raw: bytes, name: str, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Seq2SeqError(
            f"{name}: line {number} is not valid UTF-8 (byte {error.start + 1})"
        ) from error


@contextlib.contextmanager
def atomic_write(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """Write `path` through a temporary file: `with atomic_write(path) as out: out.write(...)`.

    Text is UTF-8. The parent directory must exist. A symbolic link is written through (its
    target is replaced); a replaced file keeps its permissions, a new one gets 0666 less the
    umask. What is not a regular file (/dev/null, /dev/stdout, a FIFO, a terminal) is written
    directly, as a shell's `>` would: replacing it would destroy the device. An `OSError` (no
    space, no permission) becomes a `Seq2SeqError` naming the file; any error or interrupt
    removes the temporary file and leaves `path` as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise Seq2SeqError(f"output path is a directory: {path}")
    in_devices = str(path.absolute()).startswith(("/dev/", "/proc/"))
    special = in_devices and (path.exists() or path.is_symlink())  # /dev/stdout: a link
    target = path if special else path.resolve()
    writer = _write_directly if special or _exists_not_regular(target) else _write_replacing
    with writer(target, binary) as out:
        yield out


def _exists_not_regular(path: Path) -> bool:
    return path.exists() and not path.is_file()


@contextlib.contextmanager
def _write_directly(path: Path, binary: bool) -> Iterator[IO]:
    try:
        with _open(path, binary) as out:
            yield out
    except OSError as error:
        raise Seq2SeqError(f"cannot write {path}: {error.strerror or error}") from error


def _open(path: Path, binary: bool) -> IO:
    return path.open("wb") if binary else path.open("w", encoding="utf-8")


@contextlib.contextmanager
def _write_replacing(path: Path, binary: bool) -> Iterator[IO]:
    permissions = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
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
            os.fchmod(out.fileno(), permissions)
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
