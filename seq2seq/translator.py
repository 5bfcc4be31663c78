"""Translator.from_checkpoint(path).translate(sentences): batch inference from a checkpoint alone.

Lines -> ids -> length-sorted, token-bounded batches -> search -> text -> input order.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.data.batch import collate
from seq2seq.data.sampler import TokenBatchSampler
from seq2seq.data.tokenizer import BOS_ID, EOS_ID
from seq2seq.decoding.search import SearchOptions, search
from seq2seq.errors import Seq2SeqError
from seq2seq.lit_module import TranslationModule
from seq2seq.model.autocast import has_fast_bf16

PRECISIONS = ("auto", "fp32", "bf16")

MAX_SOURCE_TOKENS = 250  # longer sources are cut to this many subwords, with a warning


@dataclass(frozen=True)
class Translation:
    text: str
    score: float  # length-normalized log-probability the search ranked by
    tokens: tuple[int, ...] = ()  # target subword ids, without EOS
    attention: np.ndarray | None = None  # (len(tokens) + 1, source subwords), when asked for


class Translator:
    """Searches with the module's fp32 weights, in fp32 or under bf16 autocast (`precision`).

    `auto` is bf16 on a CUDA device with bf16 and fp32 on CPUs: on the 2-core AMX CPU, where
    bf16 GEMMs run 4-11x faster, bf16 autocast still made greedy search 12-26% slower and beam
    search no faster (the decoder step's many small pointwise ops and casts outweigh its GEMMs;
    docs/performance.md).
    """

    def __init__(
        self, module: TranslationModule, device: torch.device, precision: str = "fp32"
    ) -> None:
        if module.tokenizer is None:
            raise Seq2SeqError("the checkpoint holds no tokenizer")
        if precision not in PRECISIONS:
            raise Seq2SeqError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision}")
        self.module = module.to(device).eval()
        self.tokenizer = module.tokenizer
        self.device = device
        if precision == "auto":
            precision = "bf16" if device.type == "cuda" and has_fast_bf16(device) else "fp32"
        self.precision = precision

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "cpu", precision: str = "fp32"
    ) -> Translator:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise Seq2SeqError(f"--device {device} asked for, but CUDA is not available here")
        checkpoint = load_checkpoint(path)
        try:
            module = TranslationModule.restore(checkpoint)
        except (KeyError, TypeError) as error:
            raise Seq2SeqError(f"{path} is not a seq2seq checkpoint ({error})") from error
        return cls(module, torch.device(device), precision)

    def translate(
        self, sentences: list[str], beam_size: int = 5, batch_tokens: int = 4000
    ) -> list[str]:
        """The best translation of every sentence, in input order; empty lines stay empty."""
        options = SearchOptions(beam_size=beam_size, nbest=1)
        return [best[0].text for best in self.translate_nbest(sentences, options, batch_tokens)]

    def translate_nbest(
        self,
        sentences: list[str],
        options: SearchOptions,
        batch_tokens: int = 4000,
        progress: bool = False,
        keep_attention: bool = False,
    ) -> list[list[Translation]]:
        """`options.nbest` translations of every sentence with their scores, in input order."""
        ids = self._encode(sentences)
        results: list[list[Translation]] = [[Translation("", 0.0)] for _ in sentences]
        for indices, batch in self._batches(ids, batch_tokens, progress):
            with self._autocast():
                hypotheses = search(
                    self.module.model,
                    batch.src,
                    batch.src_lengths,
                    options,
                    BOS_ID,
                    EOS_ID,
                    keep_attention,
                )
            for index, nbest in zip(indices, hypotheses, strict=True):
                texts = self.tokenizer.decode_tgt([h.tokens for h in nbest])
                results[index] = [
                    _translation(t, h, len(ids[index])) for t, h in zip(texts, nbest, strict=True)
                ]
        return results

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def source_pieces(self, sentence: str) -> list[str]:
        """The subwords the model reads for `sentence` (truncated like in translation)."""
        ids = self.tokenizer.encode_src([sentence])[0][:MAX_SOURCE_TOKENS]
        return [self.tokenizer.src.id_to_piece(i) for i in ids]

    def target_pieces(self, translation: Translation) -> list[str]:
        """The subwords of a translation, with the closing EOS the attention rows include."""
        return [self.tokenizer.tgt.id_to_piece(i) for i in translation.tokens] + ["</s>"]

    def _encode(self, sentences: list[str]) -> list[list[int]]:
        ids = self.tokenizer.encode_src(sentences)
        cut = sum(len(i) > MAX_SOURCE_TOKENS for i in ids)
        if cut:
            print(
                f"warning: {cut} line(s) longer than {MAX_SOURCE_TOKENS} subwords were truncated",
                file=sys.stderr,
            )
        return [
            i[:MAX_SOURCE_TOKENS] if sentence.strip() else []
            for i, sentence in zip(ids, sentences, strict=True)
        ]

    def _batches(self, ids: list[list[int]], batch_tokens: int, progress: bool) -> Iterator:
        """(indices, Batch) for the non-empty sentences, similar lengths together."""
        non_empty = [index for index, sentence in enumerate(ids) if sentence]
        lengths = np.array([len(ids[i]) for i in non_empty], dtype=np.int64)
        sampler = TokenBatchSampler(
            lengths,
            lengths,
            max(batch_tokens, MAX_SOURCE_TOKENS + 1),
            shuffle=False,
            equal_per_rank=False,
        )
        empty = np.zeros(0, dtype=np.int64)
        batches = list(sampler)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="translating", unit="batch", file=sys.stderr)
        for positions in batches:
            indices = [non_empty[p] for p in positions]
            items = [(np.array(ids[i], dtype=np.int64), empty, i) for i in indices]
            yield indices, collate(items).to(self.device)


def _translation(text: str, hypothesis, source_length: int) -> Translation:
    attention = None
    if hypothesis.attention is not None:
        attention = hypothesis.attention[:, :source_length].float().cpu().numpy()
    return Translation(text, hypothesis.score, tuple(hypothesis.tokens), attention)
