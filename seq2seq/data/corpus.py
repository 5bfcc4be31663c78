"""Read and validate line-aligned parallel text (plain or gzip, UTF-8); filter pairs and count."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from seq2seq.errors import Seq2SeqError

_GZIP_MAGIC = b"\x1f\x8b"
_READ_ERRORS = (OSError, EOFError, zlib.error)


@dataclass(frozen=True)
class CorpusFiles:
    """A parallel corpus as two line-aligned files: line i of `tgt` translates line i of `src`."""

    src: str
    tgt: str

    @classmethod
    def from_prefix(cls, prefix: str, src_lang: str, tgt_lang: str) -> CorpusFiles:
        """`train` + (`de`, `en`) -> `train.de`, `train.en` (or `.gz` when only that exists)."""
        return cls(_with_language(prefix, src_lang), _with_language(prefix, tgt_lang))


def _with_language(prefix: str, lang: str) -> str:
    plain = f"{prefix}.{lang}"
    if not Path(plain).exists() and Path(plain + ".gz").exists():
        return plain + ".gz"
    return plain


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


def _open_binary(path: Path) -> BinaryIO:
    handle = path.open("rb")
    if handle.peek(2)[:2] == _GZIP_MAGIC:  # by content, so `train.de` may be gzipped too
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    return handle


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


def _decode(raw: bytes, path: Path, number: int) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise Seq2SeqError(
            f"{path}: line {number} is not valid UTF-8 (byte {error.start + 1})"
        ) from error


def fingerprint(path: str | Path) -> tuple[str, int]:
    """SHA-256 of the decompressed text and its line count, checking UTF-8 on the way."""
    digest = hashlib.sha256()
    count = 0
    for count, line in enumerate(read_lines(path), start=1):  # noqa: B007
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest(), count


class FingerprintMemo:
    """Fingerprints already computed, in a JSON file, keyed by path, size and modification time.

    Hashing a corpus of millions of lines takes seconds; a file whose size and mtime (in ns)
    are unchanged is taken to be unchanged, so a second start need not read it again.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, list] = {}
        if self.path.is_file():
            self.entries = json.loads(self.path.read_text())

    def fingerprint(self, path: str | Path) -> tuple[str, int]:
        status = check_file(path).stat()
        key = f"{Path(path).resolve()}|{status.st_size}|{status.st_mtime_ns}"
        if key not in self.entries:
            self.entries[key] = list(fingerprint(path))
            self._save()
        digest, count = self.entries[key]
        return digest, count

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")  # ranks may race
        temporary.write_text(json.dumps(self.entries, indent=1))
        temporary.replace(self.path)


def count_aligned_pairs(files: CorpusFiles, memo: FingerprintMemo | None = None) -> tuple[str, int]:
    """Validate a corpus (readable, UTF-8, equal non-zero line counts); its fingerprint and size."""
    measure = memo.fingerprint if memo is not None else fingerprint
    src_hash, src_count = measure(files.src)
    tgt_hash, tgt_count = measure(files.tgt)
    if src_count != tgt_count:
        raise Seq2SeqError(
            f"line counts differ: {files.src} has {src_count} lines, {files.tgt} has {tgt_count}"
        )
    if src_count == 0:
        raise Seq2SeqError(f"corpus is empty: {files.src} and {files.tgt} have no lines")
    return hashlib.sha256(f"{src_hash}:{tgt_hash}".encode()).hexdigest(), src_count


def read_pairs(files: CorpusFiles) -> Iterator[tuple[str, str]]:
    """Yield (source, target) line pairs; call `count_aligned_pairs` first to validate alignment."""
    yield from zip(read_lines(files.src), read_lines(files.tgt), strict=True)


@dataclass(frozen=True)
class PairFilter:
    """Which training pairs to keep: non-empty, at most `max_length` a side, bounded ratio."""

    max_length: int = 100
    max_length_ratio: float = 3.0

    def reason_to_drop(self, src_length: int, tgt_length: int) -> str | None:
        """'empty', 'too_long', 'ratio' or None (keep), from token counts without BOS/EOS."""
        if src_length == 0 or tgt_length == 0:
            return "empty"
        if max(src_length, tgt_length) > self.max_length:
            return "too_long"
        if max(src_length, tgt_length) > self.max_length_ratio * min(src_length, tgt_length):
            return "ratio"
        return None


@dataclass
class FilterReport:
    """How many pairs were read, kept, and dropped for each reason."""

    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"empty": 0, "too_long": 0, "ratio": 0})

    def add(self, other: FilterReport) -> None:
        self.read += other.read
        self.kept += other.kept
        for reason, count in other.dropped.items():
            self.dropped[reason] += count

    def summary(self, name: str) -> str:
        drops = ", ".join(f"{count} {reason}" for reason, count in self.dropped.items())
        return f"{name}: kept {self.kept} of {self.read} pairs (dropped {drops})"
