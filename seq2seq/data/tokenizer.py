"""Train and load SentencePiece models; the only place the pad/unk/bos/eos ids are defined.

Every vocabulary, joint or separate, reserves the same four ids:

    PAD_ID = 0   padding, never predicted and ignored by the loss
    UNK_ID = 1   unknown piece (rare with byte fallback on)
    BOS_ID = 2   start of the decoder input
    EOS_ID = 3   end of every target sentence
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Literal

import sentencepiece

from seq2seq.data.corpus import CorpusFiles
from seq2seq.errors import Seq2SeqError, require
from seq2seq.files import atomic_write, make_directory, read_lines

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SAMPLE_CHARACTERS = 30_000_000  # SentencePiece's training sample: about 600 MB of its memory
ESTIMATE_LINES = 10_000  # lines the mean sentence length is read from
SPECIAL_IDS = {"pad_id": PAD_ID, "unk_id": UNK_ID, "bos_id": BOS_ID, "eos_id": EOS_ID}
# C0 controls but tab, DEL, C1 controls (NEL among them), Unicode's line and paragraph separators
_CONTROLS = [*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_CONTROLS_TO_SPACES = dict.fromkeys(_CONTROLS, " ")


@dataclass(frozen=True)
class TokenizerConfig:
    """How to train the subword model(s).

    Args:
        vocab_size: pieces per vocabulary, the four special ids included.
        model_type: SentencePiece algorithm, `unigram` (Kudo, 2018) or `bpe`.
        joint: one vocabulary shared by source and target (allows shared embeddings).
        character_coverage: share of characters covered by the vocabulary; the rest become unk
            or bytes.
        byte_fallback: spell unseen characters as UTF-8 byte pieces instead of unk.
        seed: SentencePiece's random seed (sentence sampling), for reproducible vocabularies.
        input_sentence_size: at most this many sentences are sampled for training, and fewer
            when they are long: the sample holds about SAMPLE_CHARACTERS characters at most
            (the mean length read from the first ESTIMATE_LINES lines). The trainer's memory
            grows with the characters it holds (about 20 bytes each), whatever the corpus.
    """

    vocab_size: int = 8000
    model_type: Literal["unigram", "bpe"] = "unigram"
    joint: bool = True
    character_coverage: float = 1.0
    byte_fallback: bool = True
    seed: int = 1
    input_sentence_size: int = 300_000

    def __post_init__(self) -> None:
        require(self.vocab_size >= 5, f"vocab_size must be at least 5, not {self.vocab_size}")
        require(
            0 < self.character_coverage <= 1,
            f"character_coverage must lie in (0, 1], not {self.character_coverage}",
        )


class Tokenizer:
    """Source and target SentencePiece processors built from serialized model bytes."""

    def __init__(self, src_model: bytes, tgt_model: bytes) -> None:
        self.src_model = src_model
        self.tgt_model = tgt_model
        self.src = sentencepiece.SentencePieceProcessor(model_proto=src_model)
        self.tgt = sentencepiece.SentencePieceProcessor(model_proto=tgt_model)

    @property
    def joint(self) -> bool:
        """Whether source and target share one vocabulary."""
        return self.src_model == self.tgt_model

    @property
    def src_vocab_size(self) -> int:
        """Source vocabulary size, special ids included."""
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        """Target vocabulary size, special ids included."""
        return self.tgt.get_piece_size()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of both models: equal fingerprints, equal tokenization."""
        return hashlib.sha256(self.src_model + b"\0" + self.tgt_model).hexdigest()

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        """Source lines as subword ids (no BOS or EOS)."""
        return self.src.encode(lines)

    def encode_tgt(self, lines: list[str]) -> list[list[int]]:
        """Target lines as subword ids (no BOS or EOS)."""
        return self.tgt.encode(lines)

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        """Target subword ids back to detokenized text, on one line: control characters (which
        byte-fallback pieces such as <0x0A> decode to) become spaces."""
        return [text.translate(_CONTROLS_TO_SPACES) for text in self.tgt.decode(ids)]

    def save(self, directory: str | Path) -> None:
        """Write `joint.model`, or `src.model` and `tgt.model`, into `directory`."""
        directory = make_directory(directory)
        for name, model in _model_files(self).items():
            with atomic_write(directory / name, binary=True) as out:
                out.write(model)

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """The tokenizer `save` wrote into `directory`."""
        directory = Path(directory)
        if (directory / "joint.model").is_file():
            joint = (directory / "joint.model").read_bytes()
            return cls(joint, joint)
        if (directory / "src.model").is_file() and (directory / "tgt.model").is_file():
            return cls(
                (directory / "src.model").read_bytes(), (directory / "tgt.model").read_bytes()
            )
        raise Seq2SeqError(f"no tokenizer in {directory} (joint.model or src.model + tgt.model)")


def _model_files(tokenizer: Tokenizer) -> dict[str, bytes]:
    if tokenizer.joint:
        return {"joint.model": tokenizer.src_model}
    return {"src.model": tokenizer.src_model, "tgt.model": tokenizer.tgt_model}


def train_tokenizer(corpora: list[CorpusFiles], config: TokenizerConfig) -> Tokenizer:
    """Train on the training corpora only: both sides together when joint, else each side alone."""
    if config.joint:
        joint = _train_model(_sides(corpora, "src", "tgt"), config)
        return Tokenizer(joint, joint)
    return Tokenizer(
        _train_model(_sides(corpora, "src"), config), _train_model(_sides(corpora, "tgt"), config)
    )


def _sides(corpora: list[CorpusFiles], *sides: str) -> Iterator[str]:
    for corpus in corpora:
        for side in sides:
            yield from read_lines(getattr(corpus, side))


def sample_size(mean_length: float, config: TokenizerConfig) -> int:
    """Sentences SentencePiece samples for training: input_sentence_size, or fewer when that
    many sentences of `mean_length` characters would hold more than SAMPLE_CHARACTERS."""
    return min(config.input_sentence_size, max(1, int(SAMPLE_CHARACTERS / max(mean_length, 1))))


def _train_model(sentences: Iterable[str], config: TokenizerConfig) -> bytes:
    sentencepiece.set_random_generator_seed(config.seed)
    model = io.BytesIO()
    lines = (line for line in sentences if line.strip())
    head = list(islice(lines, ESTIMATE_LINES))
    sample = sample_size(sum(map(len, head)) / max(len(head), 1), config)
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=chain(head, lines),
            model_writer=model,
            vocab_size=config.vocab_size,
            model_type=config.model_type,
            character_coverage=config.character_coverage,
            byte_fallback=config.byte_fallback,
            input_sentence_size=sample,
            shuffle_input_sentence=True,
            num_threads=2,
            minloglevel=2,
            **SPECIAL_IDS,
        )
    except RuntimeError as error:  # SentencePiece reports bad settings this way
        raise Seq2SeqError(_training_failure(error, config)) from error
    return model.getvalue()


def _training_failure(error: RuntimeError, config: TokenizerConfig) -> str:
    """SentencePiece's error in the user's terms: a vocabulary too large or too small for the
    corpus names `--data.vocab_size` and the size that fits."""
    text = str(error)
    too_large = re.search(r"Please set it to a value <= (\d+)", text)
    if too_large:
        return (
            f"--data.vocab_size {config.vocab_size} is too large for this training corpus: its"
            f" text makes at most {too_large[1]} pieces; set --data.vocab_size {too_large[1]} or"
            " lower"
        )
    too_small = re.search(r"smaller than required_chars\. \d+ vs (\d+)", text)
    if too_small:
        return (
            f"--data.vocab_size {config.vocab_size} is too small for this training corpus: its"
            f" characters (and byte pieces) need at least {too_small[1]}; set --data.vocab_size"
            f" {too_small[1]} or more, or lower --data.character_coverage"
        )
    return f"SentencePiece training failed: {text}"
