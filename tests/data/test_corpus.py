import gzip
from pathlib import Path

import pytest

from seq2seq.data.corpus import (
    CorpusFiles,
    FilterReport,
    PairFilter,
    count_aligned_pairs,
    read_pairs,
)
from seq2seq.errors import Seq2SeqError


def test_different_line_counts_name_both_files_and_counts(tmp_path: Path) -> None:
    (tmp_path / "a.de").write_text("eins\nzwei\ndrei\n")
    (tmp_path / "a.en").write_text("one\ntwo\n")
    with pytest.raises(Seq2SeqError, match=r"a\.de has 3 lines, .*a\.en has 2"):
        count_aligned_pairs(CorpusFiles(str(tmp_path / "a.de"), str(tmp_path / "a.en")))


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "e.de").write_text("")
    (tmp_path / "e.en").write_text("")
    with pytest.raises(Seq2SeqError, match="corpus is empty"):
        count_aligned_pairs(CorpusFiles(str(tmp_path / "e.de"), str(tmp_path / "e.en")))


def test_fingerprint_follows_content_not_compression(tmp_path: Path) -> None:
    (tmp_path / "p.de").write_text("a\nb\n")
    (tmp_path / "p.en").write_text("x\ny\n")
    (tmp_path / "z.de.gz").write_bytes(gzip.compress(b"a\nb\n"))
    (tmp_path / "z.en.gz").write_bytes(gzip.compress(b"x\ny\n"))
    plain = count_aligned_pairs(CorpusFiles.from_prefix(str(tmp_path / "p"), "de", "en"))
    zipped = count_aligned_pairs(CorpusFiles.from_prefix(str(tmp_path / "z"), "de", "en"))
    assert plain == zipped
    assert plain[1] == 2
    (tmp_path / "p.en").write_text("x\nY\n")
    assert count_aligned_pairs(CorpusFiles.from_prefix(str(tmp_path / "p"), "de", "en")) != plain


def test_prefix_prefers_plain_then_gzip(tmp_path: Path) -> None:
    (tmp_path / "c.de").write_text("a\n")
    (tmp_path / "c.en.gz").write_bytes(gzip.compress(b"b\n"))
    files = CorpusFiles.from_prefix(str(tmp_path / "c"), "de", "en")
    assert files == CorpusFiles(str(tmp_path / "c.de"), str(tmp_path / "c.en.gz"))
    assert list(read_pairs(files)) == [("a", "b")]


@pytest.mark.parametrize(
    ("src_length", "tgt_length", "reason"),
    [
        (0, 5, "empty"),
        (5, 0, "empty"),
        (101, 100, "too_long"),
        (10, 31, "ratio"),
        (10, 30, None),
        (100, 100, None),
    ],
)
def test_pair_filter(src_length: int, tgt_length: int, reason: str | None) -> None:
    assert (
        PairFilter(max_length=100, max_length_ratio=3.0).reason_to_drop(src_length, tgt_length)
        == reason
    )


def test_filter_report_adds_and_summarises() -> None:
    total = FilterReport()
    total.add(FilterReport(read=10, kept=7, dropped={"empty": 1, "too_long": 2, "ratio": 0}))
    total.add(FilterReport(read=5, kept=4, dropped={"empty": 0, "too_long": 0, "ratio": 1}))
    assert (total.read, total.kept, total.dropped) == (
        15,
        11,
        {"empty": 1, "too_long": 2, "ratio": 1},
    )
    assert (
        total.summary("train")
        == "train: kept 11 of 15 pairs (dropped 1 empty, 2 too_long, 1 ratio)"
    )


def test_fingerprint_memo_skips_unchanged_files_and_notices_changes(
    tmp_path: Path, monkeypatch
) -> None:
    from seq2seq.data import corpus as corpus_module

    (tmp_path / "m.de").write_text("a\nb\n")
    (tmp_path / "m.en").write_text("x\ny\n")
    files = CorpusFiles.from_prefix(str(tmp_path / "m"), "de", "en")
    memo = corpus_module.FingerprintMemo(tmp_path / "memo.json")
    first = count_aligned_pairs(files, memo)
    assert first == count_aligned_pairs(files)
    reads = []
    real_fingerprint = corpus_module.fingerprint

    def recording_fingerprint(path):
        reads.append(path)
        return real_fingerprint(path)

    monkeypatch.setattr(corpus_module, "fingerprint", recording_fingerprint)
    assert (
        count_aligned_pairs(files, corpus_module.FingerprintMemo(tmp_path / "memo.json")) == first
    )
    assert reads == []
    (tmp_path / "m.en").write_text("x\nyz\n")  # size changes
    count_aligned_pairs(files, corpus_module.FingerprintMemo(tmp_path / "memo.json"))
    assert reads == [str(tmp_path / "m.en")]
