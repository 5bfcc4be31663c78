from pathlib import Path

import pytest

from seq2seq.data.corpus import CorpusFiles
from seq2seq.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SAMPLE_CHARACTERS,
    UNK_ID,
    Tokenizer,
    TokenizerConfig,
    sample_size,
    train_tokenizer,
)
from seq2seq.errors import Seq2SeqError
from seq2seq.files import read_lines
from tests.conftest import TINY_VOCAB_SIZE


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
@pytest.mark.parametrize("joint", [True, False])
def test_round_trip_on_training_text(
    tiny_corpus: dict[str, CorpusFiles], model_type: str, joint: bool
) -> None:
    config = TokenizerConfig(vocab_size=TINY_VOCAB_SIZE, model_type=model_type, joint=joint)
    tokenizer = train_tokenizer([tiny_corpus["train"]], config)
    assert tokenizer.joint is joint
    assert tokenizer.src_vocab_size == tokenizer.tgt_vocab_size == TINY_VOCAB_SIZE
    targets = list(read_lines(tiny_corpus["train"].tgt))
    assert tokenizer.decode_tgt(tokenizer.encode_tgt(targets)) == targets
    sources = list(read_lines(tiny_corpus["train"].src))
    assert tokenizer.src.decode(tokenizer.encode_src(sources)) == sources


def test_special_ids_are_fixed(tiny_tokenizer: Tokenizer) -> None:
    for processor in (tiny_tokenizer.src, tiny_tokenizer.tgt):
        assert (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()) == (
            PAD_ID,
            UNK_ID,
            BOS_ID,
            EOS_ID,
        )
    assert all(PAD_ID not in ids for ids in tiny_tokenizer.encode_tgt(["Ab cd.", "x"]))


def test_byte_fallback_spells_unseen_characters(tiny_tokenizer: Tokenizer) -> None:
    unseen = ["Ωμέγα 日本 🚀 naïve"]
    ids = tiny_tokenizer.encode_tgt(unseen)
    assert UNK_ID not in ids[0]
    assert tiny_tokenizer.decode_tgt(ids) == unseen


def test_same_seed_same_model(tiny_corpus: dict[str, CorpusFiles]) -> None:
    config = TokenizerConfig(vocab_size=TINY_VOCAB_SIZE, seed=7)
    first = train_tokenizer([tiny_corpus["train"]], config)
    second = train_tokenizer([tiny_corpus["train"]], config)
    assert first.fingerprint == second.fingerprint


@pytest.mark.parametrize("joint", [True, False])
def test_save_and_load(tiny_corpus: dict[str, CorpusFiles], tmp_path: Path, joint: bool) -> None:
    config = TokenizerConfig(vocab_size=TINY_VOCAB_SIZE, joint=joint)
    tokenizer = train_tokenizer([tiny_corpus["train"]], config)
    tokenizer.save(tmp_path / "tok")
    expected = {"joint.model"} if joint else {"src.model", "tgt.model"}
    assert {p.name for p in (tmp_path / "tok").iterdir()} == expected
    assert Tokenizer.load(tmp_path / "tok").fingerprint == tokenizer.fingerprint


def test_load_from_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="no tokenizer in"):
        Tokenizer.load(tmp_path)


def test_too_large_vocabulary_names_the_option_and_the_largest_size_that_fits(
    tiny_corpus: dict[str, CorpusFiles],
) -> None:
    with pytest.raises(Seq2SeqError) as error:
        train_tokenizer([tiny_corpus["train"]], TokenizerConfig(vocab_size=50_000))
    message = str(error.value)
    assert message.startswith("--data.vocab_size 50000 is too large for this training corpus")
    largest = int(message.rsplit("--data.vocab_size ", 1)[1].split()[0])
    train_tokenizer([tiny_corpus["train"]], TokenizerConfig(vocab_size=largest))  # it does fit


def test_decoded_byte_pieces_never_break_a_line(tiny_tokenizer: Tokenizer) -> None:
    """Byte-fallback pieces such as <0x0A> would decode to a raw line break, CR or NUL inside
    a translation and shift every later output line; they become spaces."""
    piece = tiny_tokenizer.tgt.piece_to_id
    hostile = ["<0x0A>", "<0x0D>", "<0x00>", "<0x0B>", "<0x0C>", "<0x1E>"]
    ids = [[piece("<0x41>"), piece(name), piece("<0x42>")] for name in hostile]
    assert all(piece(name) != tiny_tokenizer.tgt.unk_id() for name in hostile)
    decoded = tiny_tokenizer.decode_tgt(ids)
    assert decoded == ["A B"] * len(hostile)
    assert all(len(text.splitlines()) == 1 for text in decoded)
    assert tiny_tokenizer.decode_tgt([[piece("<0x41>"), piece("<0x09>")]]) == ["A\t"]


def test_too_small_vocabulary_names_the_option_and_the_smallest_size_that_fits(
    tiny_corpus: dict[str, CorpusFiles],
) -> None:
    with pytest.raises(Seq2SeqError) as error:
        train_tokenizer([tiny_corpus["train"]], TokenizerConfig(vocab_size=100))
    message = str(error.value)
    assert message.startswith("--data.vocab_size 100 is too small for this training corpus")
    smallest = int(message.split("set --data.vocab_size ")[1].split()[0])
    train_tokenizer([tiny_corpus["train"]], TokenizerConfig(vocab_size=smallest + 10))


def test_long_sentences_make_the_training_sample_smaller() -> None:
    config = TokenizerConfig()
    assert sample_size(69.0, config) == config.input_sentence_size  # Multi30k's captions
    assert sample_size(190.0, config) == SAMPLE_CHARACTERS // 190  # three captions joined
    assert sample_size(0.0, config) == config.input_sentence_size
