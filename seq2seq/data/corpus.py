"""Parallel corpora: where they come from, reading and validating them, filtering pairs.

A corpus format is a `ParallelCorpus` subclass: it names the training, validation and test
corpora as line-aligned file pairs (`CorpusFiles`), fetching them first if need be. `Files`
(here) reads a user's own files, `Multi30k` (multi30k.py) finds or downloads Multi30k; a new
format is one module with one such subclass.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from seq2seq.errors import Seq2SeqError, require
from seq2seq.files import atomic_write, check_file, make_directory, read_lines


@dataclass(frozen=True)
class CorpusFiles:
    """A parallel corpus as two line-aligned files: line i of `tgt` translates line i of `src`."""

    src: str
    tgt: str

    @classmethod
    def from_prefix(cls, prefix: str, src_lang: str, tgt_lang: str) -> CorpusFiles:
        """`train` + (`de`, `en`) -> `train.de`, `train.en` (or `.gz` when only that exists)."""
        return cls(_with_language(prefix, src_lang), _with_language(prefix, tgt_lang))


class ParallelCorpus:
    """Where a data module's corpora come from (chosen by class in the configuration)."""

    def splits(self, src_lang: str, tgt_lang: str, data_dir: Path) -> dict[str, list[CorpusFiles]]:
        """The corpora of `train` (required), `val` and `test` (optional): several training
        corpora are concatenated. `data_dir` is where downloads may go."""
        raise NotImplementedError


@dataclass(frozen=True)
class Files(ParallelCorpus):
    """A user's own corpora: two line-aligned files each, named by a prefix and the languages
    (`corpora/train` with de -> en: `corpora/train.de`, `corpora/train.en`, or `.gz`).

    Args:
        train: training corpora as path prefixes, mixed as `upsample` says.
        val: validation corpus prefix.
        test: test corpus prefix.
        upsample: how many times each training corpus is repeated (default once each): the way
            to weigh a small in-domain corpus against a large general one.
    """

    train: list[str]
    val: str | None = None
    test: str | None = None
    upsample: list[int] | None = None

    def splits(self, src_lang: str, tgt_lang: str, data_dir: Path) -> dict[str, list[CorpusFiles]]:
        """The prefixes given, each as a pair of files; training corpora repeated."""
        if not self.train:
            raise Seq2SeqError("Files needs at least one training corpus (train)")
        prefixes = {"train": self.train, "val": [self.val], "test": [self.test]}
        corpora = {
            split: [CorpusFiles.from_prefix(prefix, src_lang, tgt_lang) for prefix in names]
            for split, names in prefixes.items()
            if names and names[0] is not None
        }
        corpora["train"] = upsampled(corpora["train"], self.upsample)
        return corpora


def upsampled(corpora: list[CorpusFiles], factors: list[int] | None) -> list[CorpusFiles]:
    """Each corpus repeated its factor times (all once without factors), in order."""
    if factors is None:
        return corpora
    if len(factors) != len(corpora) or min(factors) < 1:
        raise Seq2SeqError(
            f"upsample needs a whole number of at least 1 per training corpus ({len(corpora)}),"
            f" not {factors}"
        )
    return [corpus for corpus, factor in zip(corpora, factors, strict=True) for _ in range(factor)]


def _with_language(prefix: str, lang: str) -> str:
    plain = f"{prefix}.{lang}"
    if not Path(plain).exists() and Path(plain + ".gz").exists():
        return plain + ".gz"
    return plain


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
        """The fingerprint of `path`, computed only if the file changed since the last time."""
        status = check_file(path).stat()
        key = f"{Path(path).resolve()}|{status.st_size}|{status.st_mtime_ns}"
        if key not in self.entries:
            self.entries[key] = list(fingerprint(path))
            self._save()
        digest, count = self.entries[key]
        return digest, count

    def _save(self) -> None:
        make_directory(self.path.parent)
        with atomic_write(self.path) as out:  # a temporary name of its own: ranks may race
            out.write(json.dumps(self.entries, indent=1))


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

    def __post_init__(self) -> None:
        require(self.max_length >= 1, f"max_length must be at least 1, not {self.max_length}")
        require(
            self.max_length_ratio >= 1,
            f"max_length_ratio must be at least 1, not {self.max_length_ratio}",
        )

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
        """Add another report's counts to this one."""
        self.read += other.read
        self.kept += other.kept
        for reason, count in other.dropped.items():
            self.dropped[reason] += count

    def summary(self, name: str) -> str:
        """One line: kept and dropped pairs of corpus `name`."""
        drops = ", ".join(f"{count} {reason}" for reason, count in self.dropped.items())
        return f"{name}: kept {self.kept} of {self.read} pairs (dropped {drops})"
