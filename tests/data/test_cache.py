from pathlib import Path

import numpy as np
import pytest

from seq2seq.data import cache
from seq2seq.data.cache import EncodedCorpus, cache_key, encode_corpora
from seq2seq.data.corpus import CorpusFiles, PairFilter, count_aligned_pairs, read_pairs
from seq2seq.data.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from seq2seq.errors import Seq2SeqError
from tests.conftest import synthetic_pairs, write_corpus


def test_encodes_every_pair_in_order(
    tiny_corpus: dict, tiny_tokenizer: Tokenizer, tmp_path: Path
) -> None:
    corpus = tiny_corpus["train"]
    encoded = encode_corpora(tmp_path / "c", [corpus], tiny_tokenizer, None, workers=1)
    pairs = list(read_pairs(corpus))
    assert len(encoded) == len(pairs)
    for index in (0, 17, len(pairs) - 1):
        src, tgt, returned_index = encoded[index]
        assert returned_index == index
        assert tiny_tokenizer.src.decode(src.tolist()) == pairs[index][0]
        assert tiny_tokenizer.decode_tgt([tgt.tolist()]) == [pairs[index][1]]
    assert encoded.tokens["src"].dtype == np.uint16
    assert list(encoded.line_numbers) == list(range(len(pairs)))
    # every per-pair array stays on disk: millions of pairs cost page cache, not process memory
    per_pair = [*encoded.tokens.values(), *encoded.offsets.values(), encoded.line_numbers]
    assert all(isinstance(array, np.memmap) for array in per_pair)


def test_filter_drops_and_counts(tiny_tokenizer: Tokenizer, tmp_path: Path) -> None:
    pairs = [("ab cd", "Ba Dc."), ("", "Ab."), ("   ", "Ab."), ("ab " * 60, "Ba."), ("ef", "Fe.")]
    corpus = write_corpus(tmp_path / "f", pairs)
    encoded = encode_corpora(
        tmp_path / "c", [corpus], tiny_tokenizer, PairFilter(50, 3.0), workers=1
    )
    assert encoded.report.read == 5
    assert encoded.report.kept == 2
    assert encoded.report.dropped == {"empty": 2, "too_long": 1, "ratio": 0}
    assert list(encoded.line_numbers) == [0, 4]


def test_concatenates_corpora(tiny_corpus: dict, tiny_tokenizer: Tokenizer, tmp_path: Path) -> None:
    corpora = [tiny_corpus["val"], tiny_corpus["test"]]
    encoded = encode_corpora(tmp_path / "c", corpora, tiny_tokenizer, None, workers=1)
    assert len(encoded) == 80
    expected = next(iter(read_pairs(tiny_corpus["test"])))[1]
    assert tiny_tokenizer.decode_tgt([encoded[40][1].tolist()]) == [expected]


def test_worker_processes_give_identical_files(
    tiny_tokenizer: Tokenizer, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(cache, "CHUNK_PAIRS", 100)  # several chunks, so the pool really runs
    corpus = write_corpus(tmp_path / "big", synthetic_pairs(450, seed=5))
    alone = encode_corpora(tmp_path / "one", [corpus], tiny_tokenizer, PairFilter(), workers=1)
    pooled = encode_corpora(tmp_path / "two", [corpus], tiny_tokenizer, PairFilter(), workers=2)
    for name in (
        "src.tokens",
        "tgt.tokens",
        "src.offsets.npy",
        "tgt.offsets.npy",
        "line_numbers.npy",
    ):
        assert (alone.directory / name).read_bytes() == (pooled.directory / name).read_bytes()


def test_complete_cache_is_reused(
    tiny_corpus: dict, tiny_tokenizer: Tokenizer, tmp_path: Path, monkeypatch
) -> None:
    encode_corpora(tmp_path / "c", [tiny_corpus["val"]], tiny_tokenizer, None, workers=1)

    def fail(*args, **kwargs):
        raise AssertionError("a complete cache must not be written again")

    monkeypatch.setattr(cache, "_write_cache", fail)
    assert len(encode_corpora(tmp_path / "c", [tiny_corpus["val"]], tiny_tokenizer, None)) == 40


def test_key_changes_with_input_tokenizer_and_filter(
    tmp_path: Path, tiny_tokenizer: Tokenizer, tiny_corpus: dict
) -> None:
    corpus = write_corpus(tmp_path / "k", synthetic_pairs(30, seed=9))
    hashes = [count_aligned_pairs(corpus)[0]]
    key = cache_key(hashes, tiny_tokenizer, PairFilter())
    assert cache_key(hashes, tiny_tokenizer, PairFilter()) == key
    assert cache_key(hashes, tiny_tokenizer, PairFilter(max_length=50)) != key
    assert cache_key(hashes, tiny_tokenizer, None) != key
    other = train_tokenizer([tiny_corpus["train"]], TokenizerConfig(vocab_size=380))
    assert cache_key(hashes, other, PairFilter()) != key
    Path(corpus.tgt).write_text(Path(corpus.tgt).read_text().replace("a", "e", 1))
    assert cache_key([count_aligned_pairs(corpus)[0]], tiny_tokenizer, PairFilter()) != key


def test_failed_encoding_leaves_nothing(tmp_path: Path, tiny_tokenizer: Tokenizer) -> None:
    (tmp_path / "x.de").write_text("ab\ncd\n")
    (tmp_path / "x.en").write_text("Ba.\n")  # one line short: the pairing breaks mid-way
    with pytest.raises(ValueError):
        encode_corpora(
            tmp_path / "cache",
            [CorpusFiles(str(tmp_path / "x.de"), str(tmp_path / "x.en"))],
            tiny_tokenizer,
            None,
            workers=1,
        )
    assert list(tmp_path.glob("cache*")) == []


def test_empty_lines_survive_without_filter(tiny_tokenizer: Tokenizer, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "e", [("ab", "Ba."), ("", "")])
    encoded = encode_corpora(tmp_path / "c", [corpus], tiny_tokenizer, None, workers=1)
    assert len(encoded) == 2
    assert len(encoded[1][0]) == len(encoded[1][1]) == 0
    assert EncodedCorpus(encoded.directory).tgt_lengths.tolist()[1] == 0


def test_a_full_disk_is_one_line_and_leaves_nothing(
    tmp_path: Path, tiny_corpus: dict, tiny_tokenizer: Tokenizer, monkeypatch
) -> None:
    def no_space(*args, **kwargs) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.np, "save", no_space)
    with pytest.raises(Seq2SeqError, match=r"cannot write .*train: No space left on device"):
        encode_corpora(tmp_path / "train", [tiny_corpus["train"]], tiny_tokenizer, None, workers=1)
    assert list(tmp_path.iterdir()) == [tmp_path / "corpus"]  # the corpus only: no cache
