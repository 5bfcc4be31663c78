"""Encoded corpora as memory-mapped token arrays plus offsets, keyed by a hash of their inputs.

A cache directory holds, for each side, `{side}.tokens` (all token ids back to back, no BOS/EOS)
and `{side}.offsets.npy` (N + 1 int64 offsets: pair i is tokens[offsets[i]:offsets[i + 1]]),
plus `line_numbers.npy` (the pair's 0-based line in the concatenated input) and `meta.json`.
Directories are written under a temporary name and renamed when complete, so a crash never
leaves a half-written cache behind, and memory use does not grow with the corpus.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np

from seq2seq.data.corpus import CorpusFiles, FilterReport, PairFilter, read_pairs
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.errors import Seq2SeqError

CACHE_VERSION = 1
CHUNK_PAIRS = 4096
SIDES = ("src", "tgt")


class EncodedCorpus:
    """Read-only view of a cache directory: pair i as two arrays of token ids."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta = json.loads((self.directory / "meta.json").read_text())
        self.report = FilterReport(**meta["report"])
        # memory-mapped like the tokens: per-pair arrays stay pages the kernel can drop
        self.offsets = {
            side: np.load(self.directory / f"{side}.offsets.npy", mmap_mode="r") for side in SIDES
        }
        self.tokens = {side: _open_tokens(self.directory, side, meta["dtype"]) for side in SIDES}
        self.line_numbers = np.load(self.directory / "line_numbers.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.line_numbers)

    @property
    def src_lengths(self) -> np.ndarray:
        """(N,) source lengths in subwords."""
        return np.diff(self.offsets["src"])  # (N,)

    @property
    def tgt_lengths(self) -> np.ndarray:
        """(N,) target lengths in subwords."""
        return np.diff(self.offsets["tgt"])  # (N,)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(source ids, target ids, index): the item `collate` takes."""
        return self._side("src", index), self._side("tgt", index), index

    def _side(self, side: str, index: int) -> np.ndarray:
        offsets = self.offsets[side]
        return self.tokens[side][offsets[index] : offsets[index + 1]]


def _open_tokens(directory: Path, side: str, dtype: str) -> np.ndarray:
    path = directory / f"{side}.tokens"
    if path.stat().st_size == 0:  # np.memmap refuses empty files
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def cache_key(
    corpus_hashes: list[str], tokenizer: Tokenizer, pair_filter: PairFilter | None
) -> str:
    """Changes whenever an input file, the tokenizer, the filter or the format changes."""
    parts = [str(CACHE_VERSION), *corpus_hashes, tokenizer.fingerprint, repr(pair_filter)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def encode_corpora(
    directory: str | Path,
    corpora: list[CorpusFiles],
    tokenizer: Tokenizer,
    pair_filter: PairFilter | None,
    workers: int = 2,
) -> EncodedCorpus:
    """Open `directory` when it is complete, else encode the concatenated corpora into it.

    With a `pair_filter` (training data), failing pairs are dropped and counted in the report;
    without one (validation and test data), every pair is kept, empty ones too.
    """
    directory = Path(directory)
    if not (directory / "meta.json").is_file():
        _write_cache(directory, corpora, tokenizer, pair_filter, workers)
    return EncodedCorpus(directory)


def _write_cache(
    directory: Path,
    corpora: list[CorpusFiles],
    tokenizer: Tokenizer,
    pair_filter: PairFilter | None,
    workers: int,
) -> None:
    dtype = (
        np.uint16 if max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size) <= 2**16 else np.int32
    )
    temporary = directory.with_name(directory.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    offsets = {side: array("q", [0]) for side in SIDES}
    line_numbers = array("q")
    report = FilterReport()
    chunks = _chunks(chain.from_iterable(read_pairs(corpus) for corpus in corpora))
    try:
        temporary.mkdir(parents=True)
        with (
            (temporary / "src.tokens").open("wb") as src_out,
            (temporary / "tgt.tokens").open("wb") as tgt_out,
        ):
            for chunk in _map_chunks(chunks, tokenizer, pair_filter, workers):
                for side, out in zip(SIDES, (src_out, tgt_out), strict=True):
                    out.write(chunk.tokens[side].astype(dtype).tobytes())
                    offsets[side].extend(
                        (offsets[side][-1] + np.cumsum(chunk.lengths[side])).tolist()
                    )
                line_numbers.extend((chunk.first_line + chunk.kept).tolist())
                report.add(chunk.report)
        for side in SIDES:
            np.save(temporary / f"{side}.offsets.npy", np.frombuffer(offsets[side], dtype=np.int64))
        np.save(temporary / "line_numbers.npy", np.frombuffer(line_numbers, dtype=np.int64))
        meta = {"version": CACHE_VERSION, "dtype": np.dtype(dtype).name, "report": asdict(report)}
        (temporary / "meta.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(directory, ignore_errors=True)
        temporary.rename(directory)
    except OSError as error:  # no space, no permission: one line, and no half-written cache
        raise Seq2SeqError(f"cannot write {directory}: {error.strerror or error}") from error
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


@dataclass
class _EncodedChunk:
    first_line: int
    tokens: dict[str, np.ndarray]  # side -> (sum of kept lengths,)
    lengths: dict[str, np.ndarray]  # side -> (kept,)
    kept: np.ndarray  # (kept,) line offsets inside the chunk
    report: FilterReport


def _chunks(pairs: Iterator[tuple[str, str]]) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    first_line = 0
    while chunk := list(islice(pairs, CHUNK_PAIRS)):
        yield first_line, chunk
        first_line += len(chunk)


def _map_chunks(
    chunks: Iterator[tuple[int, list[tuple[str, str]]]],
    tokenizer: Tokenizer,
    pair_filter: PairFilter | None,
    workers: int,
) -> Iterator[_EncodedChunk]:
    first = list(islice(chunks, 2))
    if workers <= 1 or len(first) < 2:  # one chunk: a pool would only add start-up time
        _init_worker(tokenizer.src_model, tokenizer.tgt_model, pair_filter)
        yield from map(_encode_chunk, chain(first, chunks))
        return
    # spawn, not fork: the parent may run torch threads, which fork would copy mid-flight
    context = multiprocessing.get_context("spawn")
    initargs = (tokenizer.src_model, tokenizer.tgt_model, pair_filter)
    with context.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        yield from pool.imap(_encode_chunk, chain(first, chunks), chunksize=1)


_worker_state: dict[str, object] = {}


def _init_worker(src_model: bytes, tgt_model: bytes, pair_filter: PairFilter | None) -> None:
    _worker_state["tokenizer"] = Tokenizer(src_model, tgt_model)
    _worker_state["filter"] = pair_filter


def _encode_chunk(numbered_chunk: tuple[int, list[tuple[str, str]]]) -> _EncodedChunk:
    first_line, chunk = numbered_chunk
    tokenizer: Tokenizer = _worker_state["tokenizer"]  # type: ignore[assignment]
    pair_filter: PairFilter | None = _worker_state["filter"]  # type: ignore[assignment]
    src_lines, tgt_lines = zip(*chunk, strict=True)
    encoded = {
        "src": tokenizer.encode_src(list(src_lines)),
        "tgt": tokenizer.encode_tgt(list(tgt_lines)),
    }
    report = FilterReport(read=len(chunk))
    kept = []
    for line, (src_ids, tgt_ids) in enumerate(zip(encoded["src"], encoded["tgt"], strict=True)):
        reason = pair_filter and pair_filter.reason_to_drop(len(src_ids), len(tgt_ids))
        if reason:
            report.dropped[reason] += 1
        else:
            kept.append(line)
    report.kept = len(kept)
    return _EncodedChunk(
        first_line=first_line,
        tokens={side: _flatten([encoded[side][i] for i in kept]) for side in SIDES},
        lengths={
            side: np.array([len(encoded[side][i]) for i in kept], dtype=np.int64) for side in SIDES
        },
        kept=np.array(kept, dtype=np.int64),
        report=report,
    )


def _flatten(sequences: list[list[int]]) -> np.ndarray:
    return np.fromiter(chain.from_iterable(sequences), dtype=np.int64)
