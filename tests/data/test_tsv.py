"""Tab-separated corpora and mixing training corpora by upsampling."""

from pathlib import Path

import pytest

from seq2seq.data.corpus import Files
from seq2seq.data.tsv import Tsv, split_tsv
from seq2seq.datamodule import TranslationDataModule
from seq2seq.errors import Seq2SeqError
from seq2seq.files import read_lines
from tests.conftest import TINY_VOCAB_SIZE, synthetic_pairs, write_corpus


def write_tsv(path: Path, pairs: list[tuple[str, str]]) -> str:
    path.write_text("".join(f"{src}\t{tgt}\n" for src, tgt in pairs), encoding="utf-8")
    return str(path)


def datamodule(corpus, tmp_path: Path) -> TranslationDataModule:
    module = TranslationDataModule(
        corpus=corpus,
        data_dir=str(tmp_path / "work"),
        vocab_size=TINY_VOCAB_SIZE,
        max_tokens=300,
        encode_workers=1,
    )
    module.prepare_data()
    module.setup()
    return module


def test_a_tsv_corpus_gives_the_pairs_of_its_lines(tmp_path: Path) -> None:
    train, val = synthetic_pairs(300, seed=1), synthetic_pairs(20, seed=2)
    corpus = Tsv([write_tsv(tmp_path / "train.tsv", train)], write_tsv(tmp_path / "dev.tsv", val))
    module = datamodule(corpus, tmp_path)
    assert module.statistics()["splits"]["train"]["pairs"] == 300
    references = [module.datasets["val"][i][3] for i in range(20)]
    assert references == [tgt for _, tgt in val]
    assert "test" not in module.datasets


def test_a_tsv_line_without_one_tab_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("ein Hund\ta dog\nzwei Katzen two cats\n")
    with pytest.raises(Seq2SeqError, match=r"bad\.tsv: line 2 has 1 tab-separated fields, not 2"):
        split_tsv(str(path), "de", "en", tmp_path / "work")
    assert not list((tmp_path / "work").rglob("ready"))  # nothing half-written counts as done


def test_a_tsv_file_is_split_once_and_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "c.tsv"
    write_tsv(path, [("a b", "A B")])
    first = split_tsv(str(path), "de", "en", tmp_path / "work")
    assert list(read_lines(first.src)) == ["a b"] and list(read_lines(first.tgt)) == ["A B"]
    assert split_tsv(str(path), "de", "en", tmp_path / "work") == first
    write_tsv(path, [("a b", "A B"), ("c", "C")])
    again = split_tsv(str(path), "de", "en", tmp_path / "work")
    assert again != first and list(read_lines(again.tgt)) == ["A B", "C"]


def test_upsampling_repeats_a_training_corpus(tmp_path: Path) -> None:
    general = write_corpus(tmp_path / "general", synthetic_pairs(200, seed=1))
    domain = write_corpus(tmp_path / "domain", synthetic_pairs(30, seed=4))
    prefixes = [str(tmp_path / "general"), str(tmp_path / "domain")]
    corpus = Files(prefixes, upsample=[1, 3])
    assert corpus.splits("de", "en", tmp_path)["train"] == [general, domain, domain, domain]
    module = datamodule(corpus, tmp_path)
    assert module.statistics()["splits"]["train"]["pairs"] == 200 + 3 * 30
    with pytest.raises(Seq2SeqError, match=r"upsample needs a whole number of at least 1 per"):
        Files(prefixes, upsample=[1]).splits("de", "en", tmp_path)
