import json
from pathlib import Path

import pytest
import torch

from seq2seq.cli import main
from seq2seq.data.batch import Batch
from seq2seq.data.corpus import CorpusFiles, Files, ParallelCorpus
from seq2seq.data.multi30k import Multi30k
from seq2seq.datamodule import TranslationDataModule
from seq2seq.errors import Seq2SeqError
from tests.conftest import TINY_VOCAB_SIZE


def tiny_datamodule(
    tiny_corpus: dict[str, CorpusFiles], tmp_path: Path, **overrides
) -> TranslationDataModule:
    root = Path(tiny_corpus["train"].src).parent
    options = dict(
        corpus=Files([str(root / "train")], str(root / "val"), str(root / "test")),
        data_dir=str(tmp_path / "work"),
        vocab_size=TINY_VOCAB_SIZE,
        max_tokens=300,
        eval_max_tokens=300,
        encode_workers=1,
    )
    return TranslationDataModule(**{**options, **overrides})


def test_prepare_then_setup_gives_batches(tiny_corpus, tmp_path: Path) -> None:
    datamodule = tiny_datamodule(tiny_corpus, tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert set(datamodule.datasets) == {"train", "val"}
    batches = list(datamodule.train_dataloader())
    assert all(isinstance(b, Batch) for b in batches)
    assert sum(len(b) for b in batches) == 600
    assert max(b.src.numel() for b in batches) <= 300
    val = next(iter(datamodule.val_dataloader()))
    assert val.tgt_in.dtype == torch.int64
    datamodule.setup("test")
    assert len(datamodule.datasets["test"]) == 40


def test_second_preparation_reuses_everything(tiny_corpus, tmp_path: Path) -> None:
    tiny_datamodule(tiny_corpus, tmp_path).prepare_data()
    work = tmp_path / "work"
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    tiny_datamodule(tiny_corpus, tmp_path).prepare_data()
    after = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    assert before == after
    assert len(list((work / "cache").iterdir())) == 3


def test_setup_before_prepare_is_a_clear_error(tiny_corpus, tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="run prepare_data first"):
        tiny_datamodule(tiny_corpus, tmp_path).setup("fit")


def test_files_corpus_needs_training_data(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="needs at least one training corpus"):
        TranslationDataModule(corpus=Files(train=[]), data_dir=str(tmp_path)).prepare_data()


class Reversed(ParallelCorpus):
    """A corpus format the toolkit does not have: another format's corpora, sides swapped."""

    def __init__(self, inner: Files) -> None:
        self.inner = inner

    def splits(self, src_lang: str, tgt_lang: str, data_dir: Path) -> dict:
        swapped = self.inner.splits(src_lang, tgt_lang, data_dir)
        return {split: [CorpusFiles(c.tgt, c.src) for c in cs] for split, cs in swapped.items()}


def test_a_new_corpus_format_is_one_class(tiny_corpus, tmp_path: Path) -> None:
    root = Path(tiny_corpus["train"].src).parent
    inner = Files([str(root / "train")], str(root / "val"))
    datamodule = tiny_datamodule(tiny_corpus, tmp_path, corpus=Reversed(inner))
    datamodule.prepare_data()
    datamodule.setup("fit")
    _, _, index, reference = datamodule.datasets["val"][0]
    assert (index, reference) == (0, (root / "val.de").read_text().splitlines()[0])


def test_the_corpus_is_stored_as_plain_types(tiny_corpus, tmp_path: Path) -> None:
    datamodule = tiny_datamodule(tiny_corpus, tmp_path)
    assert datamodule.hparams["corpus"]["class_path"] == "seq2seq.data.corpus.Files"
    rebuilt = TranslationDataModule(**datamodule.hparams)
    assert rebuilt.corpus == datamodule.corpus
    assert TranslationDataModule().corpus == Multi30k()


def test_budget_must_hold_the_longest_pair() -> None:
    with pytest.raises(Seq2SeqError, match="max_tokens 50 cannot hold a pair of max_length 100"):
        TranslationDataModule(max_tokens=50)


def test_everything_filtered_is_a_clear_error(tiny_corpus, tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="no train pair is left after filtering"):
        tiny_datamodule(tiny_corpus, tmp_path, max_length=1, max_tokens=300).prepare_data()


def test_multi30k_statistics(multi30k_dir: Path, tmp_path: Path) -> None:
    datamodule = TranslationDataModule(
        corpus=Multi30k(str(multi30k_dir)), data_dir=str(tmp_path)
    )
    datamodule.prepare_data()
    datamodule.setup()
    statistics = datamodule.statistics()
    splits = statistics["splits"]
    assert statistics["tgt_vocab_size"] == 8000
    assert splits["train"]["pairs"] + sum(splits["train"]["dropped"].values()) == 29_000
    assert splits["train"]["pairs"] > 28_900
    assert (splits["val"]["pairs"], splits["test"]["pairs"]) == (1_014, 1_000)
    target_tokens = splits["train"]["tgt_tokens"] + splits["train"]["pairs"]  # subwords + EOS
    assert 430_000 < target_tokens < 480_000


def test_prepare_command_prints_statistics(tiny_corpus, tmp_path: Path, capsys) -> None:
    root = Path(tiny_corpus["train"].src).parent
    main(
        [
            "prepare",
            "--data.corpus",
            "Files",
            "--data.corpus.train",
            f"[{root / 'train'}]",
            "--data.corpus.val",
            str(root / "val"),
            "--data.data_dir",
            str(tmp_path / "w"),
            "--data.vocab_size",
            str(TINY_VOCAB_SIZE),
            "--data.encode_workers",
            "1",
        ]
    )
    statistics = json.loads(capsys.readouterr().out)
    assert statistics["splits"]["train"]["pairs"] == 600
    assert statistics["splits"]["val"]["pairs"] == 40


def test_prepare_command_reports_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "t.de").write_text("a\nb\n")
    (tmp_path / "t.en").write_text("a\n")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "prepare",
                "--data.corpus",
                "Files",
                "--data.corpus.train",
                f"[{tmp_path / 't'}]",
                "--data.data_dir",
                str(tmp_path / "w"),
            ]
        )
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("seq2seq: error: line counts differ:")
    assert "Traceback" not in error


def test_evaluation_batches_carry_the_original_references(tiny_corpus, tmp_path: Path) -> None:
    from seq2seq.files import read_lines

    datamodule = tiny_datamodule(tiny_corpus, tmp_path)
    datamodule.prepare_data()
    datamodule.setup("test")
    expected = list(read_lines(tiny_corpus["test"].tgt))
    seen = {}
    for batch in datamodule.test_dataloader():
        seen.update(zip(batch.indices.tolist(), batch.references, strict=True))
    assert [seen[index] for index in range(len(expected))] == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--data.corpus", "Files"], "the following arguments are required: train"),
        (["--data.corpus", "Fils"], "Fils"),
        (["--data.vocab_sise", "30"], "vocab_sise"),
    ],
)
def test_prepare_command_reports_bad_options_in_one_line(
    options: list[str], expected: str, capsys
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", *options])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("seq2seq: error: ")
    assert expected in error
