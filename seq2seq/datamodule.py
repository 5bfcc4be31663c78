"""TranslationDataModule: corpora -> SentencePiece -> binarized caches -> token-bounded batches.

`prepare_data` runs once per node (download, tokenizer training, encoding) and sets no
attributes, since other ranks would never see them; `setup` runs on every rank and only opens
what `prepare_data` wrote. Both find the same files because every path is derived from hashes
of the inputs and the settings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from seq2seq.checkpoint import load_checkpoint, tokenizer_of
from seq2seq.data.batch import collate
from seq2seq.data.cache import EncodedCorpus, cache_key, encode_corpora
from seq2seq.data.corpus import (
    CorpusFiles,
    FingerprintMemo,
    PairFilter,
    ParallelCorpus,
    count_aligned_pairs,
)
from seq2seq.data.multi30k import Multi30k
from seq2seq.data.sampler import TokenBatchSampler
from seq2seq.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    UNK_ID,
    Tokenizer,
    TokenizerConfig,
    train_tokenizer,
)
from seq2seq.data.tsv import Tsv  # noqa: F401  (registers the format: --data.corpus Tsv)
from seq2seq.errors import Seq2SeqError, require
from seq2seq.files import atomic_write, check_file, read_lines
from seq2seq.plain import from_plain, to_plain


@dataclass(frozen=True)
class _Plan:
    """Where every split's files are and where their derived artefacts go."""

    corpora: dict[str, list[CorpusFiles]]
    hashes: dict[str, list[str]]
    tokenizer_dir: Path


class TranslationDataModule(L.LightningDataModule):
    """Parallel corpora for training, validation and testing.

    Args:
        src_lang: source language code; also the file suffix of source files.
        tgt_lang: target language code; also the file suffix of target files.
        corpus: where the corpora come from: `Multi30k` (found locally or downloaded),
            `Files` (a user's own line-aligned files: `--data.corpus Files
            --data.corpus.train '[corpora/train]' --data.corpus.val corpora/dev`) or `Tsv`
            (a user's own tab-separated files).
        data_dir: working directory for downloads, tokenizers and encoded caches.
        vocab_size: SentencePiece pieces per vocabulary (special ids included).
        tokenizer_type: SentencePiece algorithm, `unigram` or `bpe`.
        joint_vocab: one vocabulary for both languages.
        character_coverage: share of characters the vocabulary covers.
        byte_fallback: spell unseen characters as bytes instead of unk.
        max_length: training pairs with a side longer than this (in subwords) are dropped.
        max_length_ratio: training pairs whose longer side exceeds this multiple of the shorter
            are dropped.
        max_tokens: training batch budget in tokens, padding included.
        eval_max_tokens: validation/test batch budget in tokens, padding included.
        seed: seed of the tokenizer and of the batch order.
        encode_workers: processes that encode corpora (1: in this process).
        num_workers: DataLoader worker processes.
        tokenizer_from: a checkpoint whose tokenizer to use instead of training one (set by
            `--model.init_from`: fine-tuning keeps the vocabulary).
    """

    def __init__(
        self,
        src_lang: str = "de",
        tgt_lang: str = "en",
        corpus: ParallelCorpus = Multi30k(),
        data_dir: str = "data",
        vocab_size: int = 8000,
        tokenizer_type: Literal["unigram", "bpe"] = "unigram",
        joint_vocab: bool = True,
        character_coverage: float = 1.0,
        byte_fallback: bool = True,
        max_length: int = 100,
        max_length_ratio: float = 3.0,
        max_tokens: int = 2400,
        eval_max_tokens: int = 6000,
        seed: int = 1,
        encode_workers: int = 2,
        num_workers: int = 0,
        tokenizer_from: str | None = None,
    ) -> None:
        super().__init__()
        self.corpus = from_plain(ParallelCorpus, corpus)
        self.save_hyperparameters(ignore="corpus")
        self.hparams["corpus"] = to_plain(self.corpus)  # checkpoints hold plain types only
        if max_tokens < max_length + 1:
            raise Seq2SeqError(
                f"max_tokens {max_tokens} cannot hold a pair of max_length {max_length}"
            )
        for name, value, least in (
            ("eval_max_tokens", eval_max_tokens, 1),
            ("encode_workers", encode_workers, 1),
            ("num_workers", num_workers, 0),
        ):
            require(value >= least, f"{name} must be at least {least}, not {value}")
        self.tokenizer_config = TokenizerConfig(
            vocab_size=vocab_size,
            model_type=tokenizer_type,
            joint=joint_vocab,
            character_coverage=character_coverage,
            byte_fallback=byte_fallback,
            seed=seed,
        )
        self.pair_filter = PairFilter(max_length=max_length, max_length_ratio=max_length_ratio)
        self.tokenizer: Tokenizer | None = None
        self.datasets: dict[str, EncodedCorpus | WithReferences] = {}

    def prepare_data(self) -> None:
        """Download, train the tokenizer, encode every split: rank-zero work, no attributes set."""
        plan = self._plan()
        tokenizer = self._load_or_train_tokenizer(plan)
        for split in plan.corpora:
            self._encode(plan, tokenizer, split)

    def setup(self, stage: str | None = None) -> None:
        """Open the tokenizer and the encoded splits `stage` needs (every rank)."""
        plan = self._plan()
        if not (plan.tokenizer_dir / "ready").is_file():
            raise Seq2SeqError(f"no tokenizer in {plan.tokenizer_dir}: run prepare_data first")
        self.tokenizer = Tokenizer.load(plan.tokenizer_dir)
        for split in _splits_for_stage(stage, plan):
            encoded = self._encode(plan, self.tokenizer, split)
            if split == "train":
                self.datasets[split] = encoded
                rank_zero_info(encoded.report.summary("train corpus"))  # once a fit
            else:  # evaluation is scored against the original lines, never ids decoded back
                references = [
                    line for corpus in plan.corpora[split] for line in read_lines(corpus.tgt)
                ]
                self.datasets[split] = WithReferences(encoded, references)

    def has_split(self, split: str) -> bool:
        """Whether the corpus has a `split` ("train", "val" or "test")."""
        return split in self._corpora()

    def train_dataloader(self) -> DataLoader:
        """Length-bucketed, token-bounded training batches, reshuffled every epoch."""
        return self._loader("train", self.hparams.max_tokens, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches with their original reference lines."""
        return self._loader("val", self.hparams.eval_max_tokens, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches with their original reference lines."""
        return self._loader("test", self.hparams.eval_max_tokens, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The test corpus's sources, for `train.py predict`."""
        return self._loader("test", self.hparams.eval_max_tokens, shuffle=False)

    def statistics(self) -> dict[str, object]:
        """Pairs, tokens and filter counts of every loaded split (after `setup`)."""
        assert self.tokenizer is not None, "call setup() first"
        splits = {}
        for split, dataset in self.datasets.items():
            splits[split] = {
                "pairs": len(dataset),
                "src_tokens": int(dataset.src_lengths.sum()),
                "tgt_tokens": int(dataset.tgt_lengths.sum()),
                "dropped": dataset.report.dropped,
            }
        return {
            "src_vocab_size": self.tokenizer.src_vocab_size,
            "tgt_vocab_size": self.tokenizer.tgt_vocab_size,
            "splits": splits,
        }

    def target_words(self) -> torch.Tensor:
        """(V,) bool: the target words a model trained on this data scores: those its training
        targets hold, plus BOS (the first input), EOS and <unk> (after `setup("fit")`)."""
        if "train" not in self.datasets:
            raise Seq2SeqError("no train corpus was configured or set up")
        assert self.tokenizer is not None
        counts = np.bincount(
            self.datasets["train"].tokens["tgt"], minlength=self.tokenizer.tgt_vocab_size
        )
        words = torch.from_numpy(counts > 0)
        words[[BOS_ID, EOS_ID, UNK_ID]] = True
        return words

    def _loader(self, split: str, max_tokens: int, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise Seq2SeqError(f"no {split} corpus was configured or set up")
        dataset = self.datasets[split]
        trainer = self._trainer
        sampler = TokenBatchSampler(
            dataset.src_lengths,
            dataset.tgt_lengths,
            max_tokens=max_tokens,
            shuffle=shuffle,
            seed=self.hparams.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            equal_per_rank=shuffle,
            resume_offset=self._batches_already_trained if shuffle else None,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def _plan(self) -> _Plan:
        corpora = self._corpora()
        memo = FingerprintMemo(Path(self.hparams.data_dir) / "fingerprints.json")
        hashes = {
            split: [count_aligned_pairs(corpus, memo)[0] for corpus in files]
            for split, files in corpora.items()
        }
        if self.hparams.tokenizer_from:  # the checkpoint's tokenizer, whatever the corpus
            status = check_file(self.hparams.tokenizer_from).stat()
            source = f"{Path(self.hparams.tokenizer_from).resolve()}|{status.st_mtime_ns}"
        else:
            source = repr(self.tokenizer_config) + "|".join(hashes["train"])
        key = hashlib.sha256(source.encode()).hexdigest()[:24]
        return _Plan(corpora, hashes, Path(self.hparams.data_dir) / "tokenizers" / key)

    def _corpora(self) -> dict[str, list[CorpusFiles]]:
        hp = self.hparams
        return self.corpus.splits(hp.src_lang, hp.tgt_lang, Path(hp.data_dir))

    def _load_or_train_tokenizer(self, plan: _Plan) -> Tokenizer:
        ready = plan.tokenizer_dir / "ready"
        if ready.is_file():
            return Tokenizer.load(plan.tokenizer_dir)
        if self.hparams.tokenizer_from:
            tokenizer = self._checkpoint_tokenizer(self.hparams.tokenizer_from)
        else:
            tokenizer = train_tokenizer(plan.corpora["train"], self.tokenizer_config)
        tokenizer.save(plan.tokenizer_dir)
        with atomic_write(ready) as out:  # the models are whole: a marker for the other ranks
            out.write("")
        return tokenizer

    def _checkpoint_tokenizer(self, path: str) -> Tokenizer:
        """The tokenizer `path` embeds; its vocabulary must be `vocab_size` (the model's)."""
        tokenizer = tokenizer_of(load_checkpoint(path))
        sizes = {tokenizer.src_vocab_size, tokenizer.tgt_vocab_size}
        if sizes != {self.tokenizer_config.vocab_size}:
            raise Seq2SeqError(
                f"--data.vocab_size {self.tokenizer_config.vocab_size}, but the tokenizer of"
                f" {path} has {'/'.join(map(str, sorted(sizes)))} pieces: set --data.vocab_size"
                f" {max(sizes)}"
            )
        return tokenizer

    def _encode(self, plan: _Plan, tokenizer: Tokenizer, split: str) -> EncodedCorpus:
        pair_filter = self.pair_filter if split == "train" else None
        key = cache_key(plan.hashes[split], tokenizer, pair_filter)
        directory = Path(self.hparams.data_dir) / "cache" / f"{split}-{key}"
        encoded = encode_corpora(
            directory, plan.corpora[split], tokenizer, pair_filter, self.hparams.encode_workers
        )
        if len(encoded) == 0:
            raise Seq2SeqError(
                f"no {split} pair is left after filtering: {encoded.report.summary(split)}"
            )
        return encoded

    @property
    def _trainer(self) -> L.Trainer | None:
        return getattr(self, "trainer", None)

    def _batches_already_trained(self) -> int:
        """Batches of the current epoch done before a mid-epoch checkpoint, when resuming one.

        Lightning restores its progress counters but restarts the data from the top of the
        epoch unless the loader skips ahead; the sampler asks this when a pass starts.
        """
        trainer = self._trainer
        if trainer is None or not trainer.fit_loop.epoch_loop.restarting:
            return 0
        return trainer.fit_loop.epoch_loop.batch_progress.current.completed


class WithReferences(Dataset):
    """An encoded evaluation corpus whose items also carry the original target line."""

    def __init__(self, encoded: EncodedCorpus, references: list[str]) -> None:
        self.encoded = encoded
        self.references = [references[line] for line in encoded.line_numbers]
        self.src_lengths = encoded.src_lengths
        self.tgt_lengths = encoded.tgt_lengths
        self.report = encoded.report

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, int, str]:
        return (*self.encoded[index], self.references[index])


def _splits_for_stage(stage: str | None, plan: _Plan) -> list[str]:
    wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["test"]}
    names = wanted.get(stage, ["train", "val", "test"]) if stage else ["train", "val", "test"]
    return [name for name in names if name in plan.corpora]
