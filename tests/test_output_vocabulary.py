"""Which target words a run's model scores (`--model.output_vocabulary`): those of its training
targets by default, every word with `full`; what its checkpoints, averages and ensembles then
do with them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from seq2seq.averaging import average_checkpoints
from seq2seq.checkpoint import load_model, save_checkpoint
from seq2seq.cli import main as seq2seq
from seq2seq.data.tokenizer import BOS_ID, EOS_ID, UNK_ID
from seq2seq.decoding.search import SearchOptions, search
from seq2seq.errors import Seq2SeqError
from seq2seq.lightning_cli import main as train
from seq2seq.model.ensemble import Ensemble
from seq2seq.translator import Translator
from tests.conftest import write_corpus
from tests.models import source_batch, tiny_model
from tests.training_helpers import REVERSAL_WORDS, tiny_run_args

TARGET_WORDS = REVERSAL_WORDS[:6]  # the source's other words are left out of its translation


def dropping_corpus(root: Path) -> Path:
    """train/val/test where the target is the source's words in reverse order, less any word
    outside TARGET_WORDS: the target side uses only some of the joint vocabulary's pieces."""
    generator = random.Random(0)

    def pair() -> tuple[str, str]:
        words = generator.choices(REVERSAL_WORDS, k=generator.randint(3, 7))
        kept = [word for word in reversed(words) if word in TARGET_WORDS] or [TARGET_WORDS[0]]
        return " ".join(words), " ".join(kept)

    for split, count in (("train", 2000), ("val", 50), ("test", 50)):
        write_corpus(root / split, [pair() for _ in range(count)])
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Its last checkpoint after 30 updates on the dropping corpus, per output vocabulary."""
    root = tmp_path_factory.mktemp("output_vocabulary")
    corpus = dropping_corpus(root / "corpus")
    checkpoints = {}
    for choice in ("targets", "full"):
        settings = {"trainer.max_steps": 30, "model.output_vocabulary": choice}
        train(["fit", *tiny_run_args(corpus, root / choice, **settings)])
        checkpoints[choice] = root / choice / "run" / "checkpoints" / "last.ckpt"
    checkpoints["corpus"] = corpus
    return checkpoints


def test_a_run_scores_the_words_of_its_training_targets(runs) -> None:
    """The pieces of the training targets, BOS, EOS and <unk>: not the source-only pieces."""
    loaded = load_model(runs["targets"])
    targets = (runs["corpus"] / "train.en").read_text().splitlines()
    expected = {piece for line in loaded.tokenizer.encode_tgt(targets) for piece in line}
    expected |= {BOS_ID, EOS_ID, UNK_ID}
    assert set(loaded.model.output_words().tolist()) == expected
    assert len(expected) < loaded.tokenizer.tgt_vocab_size - 5  # the source's pieces are out
    assert load_model(runs["full"]).model.decoder.target_words.all()


def test_its_translations_use_only_those_words(runs) -> None:
    sources = (runs["corpus"] / "test.de").read_text().splitlines()[:20]
    translator = Translator.from_checkpoint(runs["targets"])
    scored = set(translator.model.output_words().tolist())
    for options in (SearchOptions(beam_size=1), SearchOptions(beam_size=4, nbest=4)):
        for nbest in translator.translate_ids(translator.encode(sources), options):
            assert {t for translation in nbest for t in translation.tokens} <= scored


def test_checkpoints_scoring_other_words_are_not_averaged(runs, tmp_path: Path) -> None:
    """Of one run (the same words) they average; another corpus's words are one line."""
    assert average_checkpoints([runs["targets"], runs["targets"]])["state_dict"]
    other = torch.load(runs["targets"], weights_only=True)
    other["state_dict"]["model.decoder.target_words"][5:] = True
    save_checkpoint(other, tmp_path / "other.ckpt")
    with pytest.raises(Seq2SeqError, match=r"differ in model\.decoder\.target_words"):
        average_checkpoints([runs["targets"], tmp_path / "other.ckpt"])


def test_an_ensemble_searches_the_words_every_model_scores() -> None:
    narrow, wide = tiny_model(seed=1), tiny_model(seed=2)
    words = torch.zeros(30, dtype=torch.bool)
    words[[1, 2, 3, 5, 8, 13, 21]] = True
    narrow.restrict_output(words)
    ensemble = Ensemble([narrow, wide])
    assert ensemble.output_words().tolist() == [1, 2, 3, 5, 8, 13, 21]
    src, lengths = source_batch([4, 6], vocab=30)
    for options in (SearchOptions(beam_size=1), SearchOptions(beam_size=3, nbest=3)):
        found = search(ensemble, src, lengths, options, BOS_ID, EOS_ID, ensemble.search_weights())
        assert {t for nbest in found for h in nbest for t in h.tokens} <= {1, 2, 5, 8, 13, 21}


def test_a_bad_output_vocabulary_is_one_line(runs, tmp_path: Path, capsys) -> None:
    args = tiny_run_args(runs["corpus"], tmp_path, **{"model.output_vocabulary": "some"})
    with pytest.raises(SystemExit):
        train(["fit", *args])
    assert "output_vocabulary" in capsys.readouterr().err


def test_the_cli_translates_and_exports_with_the_scored_words(runs, tmp_path: Path, capsys) -> None:
    """translate prints only target-side words; an export scores what the checkpoint scores."""
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    source = tmp_path / "source.de"
    source.write_text("ab qr cd wx\nst uv ef\n")
    seq2seq(["translate", "--checkpoint", str(runs["targets"]), "--input", str(source)])
    printed = capsys.readouterr().out.split()
    assert printed and set("".join(printed)) <= set("".join(TARGET_WORDS))
    seq2seq(["export", "--checkpoint", str(runs["targets"]), "--output", str(tmp_path / "onnx")])
    capsys.readouterr()
    seq2seq(["translate", "--model", str(tmp_path / "onnx"), "--input", str(source)])
    assert capsys.readouterr().out.split() == printed
