"""Lexical shortlists: the target words a sentence's search may choose from. `seq2seq
shortlist` builds one from a parallel corpus (the training corpus by default); `--shortlist
FILE` searches with it.

Search scores every hypothesis against the whole target vocabulary at every step: the output
layer, its log-softmax and the top-k are about a third of beam search's time, yet most words
cannot be right for a given source. A shortlist keeps, for each source subword, the `per_word`
target subwords found most often in the same sentence pair as it (the highest co-occurrence
counts, so the largest p(t | s)), plus the `frequent` most frequent target subwords. A sentence
may use its source subwords' lists, the frequent words, BOS and EOS; the model's probabilities
are normalized over those, so a sentence translates alike alone or in any batch. A batch's
output layer computes the union of its sentences' words only. This is Marian's lexical
shortlist with sentence co-occurrence counts in place of word alignments.

Shapes: B sentences, S source length, V' target words a batch may use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seq2seq.checkpoint import load_torch_file, save_checkpoint
from seq2seq.data import multi30k, tsv  # noqa: F401  (register the corpus formats)
from seq2seq.data.corpus import CorpusFiles, ParallelCorpus
from seq2seq.data.tokenizer import BOS_ID, EOS_ID, Tokenizer
from seq2seq.decoding.step_api import SearchVocabulary
from seq2seq.errors import Seq2SeqError
from seq2seq.files import read_lines
from seq2seq.plain import from_plain

FORMAT = "seq2seq-shortlist"
FIELDS = {"candidates", "frequent", "target_size", "fingerprint"}  # what a shortlist file holds
PAIRS_PER_CHUNK = 20_000  # sentence pairs counted at once: bounds the memory of the counting
DENSE_LIMIT = 1 << 26  # (source, target) id pairs counted in a dense int32 table up to this many


@dataclass(frozen=True)
class Shortlist:
    """The target candidates of every source subword, and the words every sentence may use.

    Args:
        candidates: (source vocabulary, per_word) target ids of each source id, the most
            frequent companion first; -1 where it has fewer.
        frequent: (F,) target ids any sentence may use: the most frequent, BOS and EOS.
        target_size: the target vocabulary's size.
        fingerprint: the fingerprint of the tokenizer whose ids these are.
    """

    candidates: torch.Tensor
    frequent: torch.Tensor
    target_size: int
    fingerprint: str

    @property
    def per_word(self) -> int:
        """Candidates kept per source subword."""
        return self.candidates.shape[1]

    def vocabulary(self, src: torch.Tensor) -> SearchVocabulary:
        """(B, S) source ids (padding has no candidates) -> the words their search may use:
        all that the batch's sentences may use, sorted, and which of them each may not; on
        src's device."""
        listed = self.candidates[src.cpu()].flatten(1)  # (B, S*per_word), -1 where none
        listed = torch.cat((listed, self.frequent.expand(src.shape[0], -1)), 1).long()
        none = self.target_size  # an extra column for the -1s
        inside = torch.zeros(src.shape[0], none + 1, dtype=torch.bool)  # (B, V + 1)
        inside.scatter_(1, torch.where(listed >= 0, listed, none), True)
        inside = inside[:, :none]
        words = inside.any(dim=0).nonzero().squeeze(1)  # (V',) sorted
        return SearchVocabulary(words.to(src.device), ~inside[:, words].to(src.device))

    def save(self, path: str | Path) -> None:
        """Write the shortlist to `path` (a torch file, atomically)."""
        save_checkpoint({"format": FORMAT, **{name: getattr(self, name) for name in FIELDS}}, path)

    @classmethod
    def load(cls, path: str | Path) -> Shortlist:
        """The shortlist `seq2seq shortlist` wrote to `path`; a one-line error if it is not."""
        stored = load_torch_file(path, "shortlist")
        if not isinstance(stored, dict) or stored.get("format") != FORMAT or FIELDS - stored.keys():
            raise Seq2SeqError(f"{path} is not a shortlist: build one with seq2seq shortlist")
        return cls(**{name: stored[name] for name in FIELDS})


def build_shortlist(
    pairs: Iterable[tuple[list[int], list[int]]],
    tokenizer: Tokenizer,
    per_word: int = 100,
    frequent: int = 100,
) -> Shortlist:
    """The shortlist of a corpus of (source ids, target ids) sentence pairs in `tokenizer`'s
    vocabularies: each source subword's `per_word` most frequent target companions (ties:
    the more frequent target subword, then the lower id) and the `frequent` most frequent
    target subwords."""
    if per_word < 1 or frequent < 0:
        raise Seq2SeqError(
            f"a shortlist needs per_word >= 1 and frequent >= 0, not {per_word} and {frequent}"
        )
    sources, targets = tokenizer.src_vocab_size, tokenizer.tgt_vocab_size
    keys, counts, target_counts = co_occurrences(pairs, sources, targets)
    if keys.size == 0:
        raise Seq2SeqError("the corpus has no sentence pair with words on both sides")
    source, target = np.divmod(keys, targets)
    order = np.lexsort((target, -target_counts[target], -counts, source))  # source first
    source, target = source[order], target[order]
    rank = np.arange(source.size) - np.searchsorted(source, source)  # within each source id
    kept = rank < per_word
    candidates = np.full((sources, per_word), -1, dtype=np.int32)
    candidates[source[kept], rank[kept]] = target[kept]
    by_frequency = np.lexsort((np.arange(targets), -target_counts))
    common = by_frequency[:frequent][target_counts[by_frequency[:frequent]] > 0]
    always = np.union1d(common, [BOS_ID, EOS_ID]).astype(np.int32)
    return Shortlist(
        torch.from_numpy(candidates), torch.from_numpy(always), targets, tokenizer.fingerprint
    )


def co_occurrences(
    pairs: Iterable[tuple[list[int], list[int]]], source_size: int, target_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sentence co-occurrence counts of a corpus of (source ids, target ids) pairs: the pairs
    seen, as keys source id x target_size + target id (sorted), the sentence pairs holding each,
    and (target_size,) the sentence pairs holding each target id. A word counts once a pair.

    Counted in a dense table where source_size x target_size fits DENSE_LIMIT (an 8k joint
    vocabulary: 256 MB), else by sorting each chunk's pairs into the counts so far."""
    size = source_size * target_size
    dense = np.zeros(size, np.int32) if size <= DENSE_LIMIT else None
    keys, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
    target_counts = np.zeros(target_size, np.int64)
    for chunk in _chunks(pairs, PAIRS_PER_CHUNK):
        seen = [np.zeros(0, np.int64)]
        for source_ids, target_ids in chunk:
            words = np.unique(np.asarray(source_ids, dtype=np.int64))
            companions = np.unique(np.asarray(target_ids, dtype=np.int64))
            target_counts[companions] += 1
            seen.append((words[:, None] * target_size + companions).ravel())
        new = np.concatenate(seen)
        if dense is not None:
            np.add(dense, np.bincount(new, minlength=dense.size), out=dense, casting="unsafe")
        else:
            keys, counts = _merged(keys, counts, *np.unique(new, return_counts=True))
    if dense is not None:
        keys = np.flatnonzero(dense)
        counts = dense[keys].astype(np.int64)
    return keys, counts, target_counts


def _merged(
    keys: np.ndarray, counts: np.ndarray, more_keys: np.ndarray, more_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of sorted unique keys with counts as one."""
    merged, inverse = np.unique(np.concatenate((keys, more_keys)), return_inverse=True)
    totals = np.bincount(inverse, weights=np.concatenate((counts, more_counts)))
    return merged, totals.astype(np.int64)


def training_corpora(data: dict[str, Any]) -> list[CorpusFiles]:
    """The training corpora of a run's data settings (a checkpoint's datamodule hyperparameters:
    corpus, languages, data directory), found or fetched as training found them."""
    if not isinstance(data.get("corpus"), dict):
        raise Seq2SeqError("the checkpoint records no training corpus: give --source and --target")
    corpus = from_plain(ParallelCorpus, data["corpus"])
    return corpus.splits(data["src_lang"], data["tgt_lang"], Path(data["data_dir"]))["train"]


def encoded_pairs(
    corpora: list[CorpusFiles], tokenizer: Tokenizer
) -> Iterator[tuple[list[int], list[int]]]:
    """The (source ids, target ids) of every line pair of the corpora's line-aligned files
    (plain or gzipped); a one-line error, before the first pair, if a corpus's two files differ
    in line count."""
    for corpus in corpora:
        counts = [sum(1 for _ in read_lines(path)) for path in (corpus.src, corpus.tgt)]
        if counts[0] != counts[1]:
            raise Seq2SeqError(f"{corpus.src} has {counts[0]} lines, {corpus.tgt} has {counts[1]}")
    for corpus in corpora:
        lines = zip(read_lines(corpus.src), read_lines(corpus.tgt), strict=True)
        for chunk in _chunks(lines, PAIRS_PER_CHUNK):
            sources, targets = zip(*chunk, strict=True)
            yield from zip(
                tokenizer.encode_src(list(sources)),
                tokenizer.encode_tgt(list(targets)),
                strict=True,
            )


def _chunks(pairs: Iterable, size: int) -> Iterator[list]:
    iterator = iter(pairs)
    while chunk := list(islice(iterator, size)):
        yield chunk
