"""Shared fixtures: a tiny synthetic parallel corpus, its tokenizer, the local Multi30k copy,
and one model trained once per test session on the word-reversal task."""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path
from typing import NamedTuple

import pytest

from seq2seq.data.corpus import CorpusFiles
from seq2seq.data.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from seq2seq.shortlist import Shortlist

TINY_VOCAB_SIZE = 400
TRAINED_STEPS = 600  # enough for the reversal task's exact-match learning test


def synthetic_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Pairs of made-up sentences: the target spells each source word backwards, capitalised."""
    generator = random.Random(seed)
    letters = "abcdefghiklmnoprstuvwyzäöü"
    words = ["".join(generator.choices(letters, k=generator.randint(2, 7))) for _ in range(150)]
    pairs = []
    for _ in range(count):
        sentence = generator.choices(words, k=generator.randint(3, 12))
        pairs.append((" ".join(sentence), " ".join(w[::-1].capitalize() for w in sentence) + "."))
    return pairs


def write_corpus(prefix: Path, pairs: list[tuple[str, str]], gz: bool = False) -> CorpusFiles:
    """Write `prefix.de` / `prefix.en` (gzipped when asked) and return them as CorpusFiles."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for side, lang in enumerate(("de", "en")):
        path = Path(f"{prefix}.{lang}" + (".gz" if gz else ""))
        text = "".join(pair[side] + "\n" for pair in pairs).encode()
        path.write_bytes(gzip.compress(text) if gz else text)
        paths.append(str(path))
    return CorpusFiles(*paths)


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> dict[str, CorpusFiles]:
    """train (600 pairs), val and test (40 each) under tmp_path/corpus."""
    root = tmp_path / "corpus"
    return {
        "train": write_corpus(root / "train", synthetic_pairs(600, seed=1)),
        "val": write_corpus(root / "val", synthetic_pairs(40, seed=2)),
        "test": write_corpus(root / "test", synthetic_pairs(40, seed=3), gz=True),
    }


@pytest.fixture
def tiny_tokenizer(tiny_corpus: dict[str, CorpusFiles]) -> Tokenizer:
    return train_tokenizer([tiny_corpus["train"]], TokenizerConfig(vocab_size=TINY_VOCAB_SIZE))


class Trained(NamedTuple):
    """A checkpoint trained on the reversal corpus by `train.py fit`, and that corpus."""

    checkpoint: Path
    corpus: Path


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """The session's trained model: TRAINED_STEPS updates of tiny_run_args on word reversal.
    Tests read it; one that changes files copies the checkpoint first."""
    from seq2seq.lightning_cli import main
    from tests.training_helpers import reversal_corpus, tiny_run_args

    root = tmp_path_factory.mktemp("trained")
    corpus = reversal_corpus(root / "corpus")
    settings = {"trainer.max_steps": TRAINED_STEPS, "trainer.limit_val_batches": 0}
    main(["fit", *tiny_run_args(corpus, root, **settings)])
    return Trained(root / "run" / "checkpoints" / "last.ckpt", corpus)


def trained_shortlist(trained: Trained, per_word: int, frequent: int = 100) -> Shortlist:
    """The shortlist of the trained model's training corpus (`seq2seq shortlist`'s default)."""
    from seq2seq.checkpoint import load_model
    from seq2seq.shortlist import build_shortlist, encoded_pairs

    tokenizer = load_model(trained.checkpoint).tokenizer
    corpus = CorpusFiles(str(trained.corpus / "train.de"), str(trained.corpus / "train.en"))
    return build_shortlist(encoded_pairs([corpus], tokenizer), tokenizer, per_word, frequent)


@pytest.fixture
def multi30k_dir() -> Path:
    """The local Multi30k copy named by SEQ2SEQ_MULTI30K_DIR (CI sets it)."""
    directory = os.environ.get("SEQ2SEQ_MULTI30K_DIR")
    if not directory:
        pytest.skip("SEQ2SEQ_MULTI30K_DIR is not set")
    return Path(directory)
