"""Translator(model, tokenizer): batch inference from a checkpoint alone, without Lightning.

Lines -> ids (cut at MAX_SOURCE_TOKENS subwords) -> length-sorted, token-bounded batches ->
`translate_ids` -> input order. `translate_ids` is the one translation path: `seq2seq
translate`, validation and test decoding and `train.py predict` all go through it, so they
treat empty sources, over-long sources, precision and scores alike.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from seq2seq.checkpoint import load_model
from seq2seq.data.batch import collate
from seq2seq.data.sampler import TokenBatchSampler
from seq2seq.data.tokenizer import BOS_ID, EOS_ID, Tokenizer
from seq2seq.decoding.search import SearchOptions, search
from seq2seq.decoding.step_api import Hypothesis
from seq2seq.errors import Seq2SeqError
from seq2seq.model.autocast import has_fast_bf16
from seq2seq.model.ensemble import Ensemble
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.shortlist import Shortlist

if TYPE_CHECKING:
    from seq2seq.export.engine import OnnxModel

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
MAX_SOURCE_TOKENS = 250  # longer sources are cut to this many subwords
_NO_TARGET = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Translation:
    """One translation of one source."""

    text: str
    score: float  # log-probability over the length penalty: what the search ranked by
    tokens: tuple[int, ...] = ()  # target subword ids, without EOS
    attention: np.ndarray | None = None  # (len(tokens) + 1, source subwords), when asked for


class Translator:
    """Searches with a model's weights in fp32 or under bf16 autocast (`precision`).

    `auto` is bf16 on a CUDA device with bf16 and fp32 on CPUs, where bf16 search is no faster
    (docs/performance.md). The search weights are built once, here, from the model's
    current parameters: a model whose weights change afterwards needs a new Translator.

    Args:
        model: the model (or ensemble of models), on the device to search on; or an exported
            model in ONNX Runtime (`OnnxModel`, CPU and fp32 only).
        tokenizer: its tokenizer.
        precision: `auto`, `fp32` or `bf16`.
        search: the default search options (a checkpoint's test options).
        shortlist: the target words each sentence may use (shortlist.py); None: all of them.
    """

    def __init__(
        self,
        model: Seq2Seq | Ensemble | OnnxModel,
        tokenizer: Tokenizer,
        precision: Precision = "auto",
        search: SearchOptions = SearchOptions(),
        shortlist: Shortlist | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise Seq2SeqError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision}")
        if isinstance(model, nn.Module):
            self.model = model.eval()
            self.device = next(model.parameters()).device
        elif precision == "bf16":
            raise Seq2SeqError("the onnxruntime engine searches in fp32: drop --precision bf16")
        elif shortlist is not None:
            raise Seq2SeqError("the onnxruntime engine searches every word: drop --shortlist")
        else:
            self.model, self.device = model, model.device
        if shortlist is not None and shortlist.fingerprint != tokenizer.fingerprint:
            raise Seq2SeqError(
                "the shortlist was built for another tokenizer than the model's: build it with"
                " seq2seq shortlist --checkpoint of this model"
            )
        self.tokenizer = tokenizer
        self.shortlist = shortlist
        if precision == "auto":
            cuda_bf16 = self.device.type == "cuda" and has_fast_bf16(self.device)
            precision = "bf16" if cuda_bf16 else "fp32"
        self.precision = precision
        self.options = search
        with self._precision():
            self.weights = model.search_weights()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "cpu",
        precision: Precision = "auto",
        shortlist: Shortlist | None = None,
    ) -> Translator:
        """The translator of a checkpoint written by train.py, on `device`."""
        return cls.from_checkpoints([path], device, precision, shortlist)

    @classmethod
    def from_checkpoints(
        cls,
        paths: Sequence[str | Path],
        device: str = "cpu",
        precision: Precision = "auto",
        shortlist: Shortlist | None = None,
    ) -> Translator:
        """The translator of several checkpoints searched as one ensemble (model/ensemble.py),
        on `device`; one checkpoint is that model alone. They must share the tokenizer; the
        search options default to the first one's test settings."""
        on = search_device(device)
        loaded = [load_model(path, on) for path in paths]
        first = loaded[0]
        for path, other in zip(paths[1:], loaded[1:], strict=True):
            if other.tokenizer.fingerprint != first.tokenizer.fingerprint:
                raise Seq2SeqError(
                    f"{path} has another tokenizer than {paths[0]}: an ensemble's models must"
                    " share the tokenizer (train them on the same data settings)"
                )
        model = first.model if len(loaded) == 1 else Ensemble([one.model for one in loaded])
        return cls(model, first.tokenizer, precision, first.search, shortlist)

    @classmethod
    def from_export(
        cls, directory: str | Path, precision: Precision = "auto", threads: int | None = None
    ) -> Translator:
        """The translator of an export written by `seq2seq export`, searched by ONNX Runtime
        on CPU with `threads` threads (default torch's); its search defaults are the
        checkpoint's test settings."""
        from seq2seq.export.engine import OnnxModel

        model = OnnxModel(directory, threads)
        return cls(model, model.tokenizer, precision, model.manifest.search)

    @property
    def engine(self) -> str:
        """What searches: `torch`, or `onnxruntime` for an exported model."""
        return "torch" if isinstance(self.model, nn.Module) else "onnxruntime"

    def translate(
        self,
        sentences: list[str],
        beam_size: int | None = None,
        batch_tokens: int = 4000,
        **search: Any,
    ) -> list[str]:
        """The best translation of every sentence, in input order; empty lines stay empty.
        `beam_size` and `search` (SearchOptions' fields: strategy, length_penalty, alpha, ...)
        change the translator's search options for this call."""
        given = {"beam_size": beam_size, **search} if beam_size is not None else search
        unknown = set(given) - {f.name for f in fields(SearchOptions)} | ({"nbest"} & set(given))
        if unknown:
            raise Seq2SeqError(
                f"translate takes SearchOptions' fields but nbest (translate_nbest gives"
                f" several), not {', '.join(sorted(unknown))}"
            )
        options = replace(self.options, **given, nbest=1)
        return [best[0].text for best in self.translate_nbest(sentences, options, batch_tokens)]

    def translate_nbest(
        self,
        sentences: list[str],
        options: SearchOptions | None = None,
        batch_tokens: int = 4000,
        progress: bool = False,
        keep_attention: bool = False,
    ) -> list[list[Translation]]:
        """`options.nbest` translations of every sentence with their scores, in input order."""
        ids = self.encode(sentences)
        results: list[list[Translation]] = [[] for _ in sentences]
        for indices in self.batches(ids, batch_tokens, progress):
            translations = self.translate_ids([ids[i] for i in indices], options, keep_attention)
            for index, nbest in zip(indices, translations, strict=True):
                results[index] = nbest
        return [nbest or [Translation("", 0.0)] for nbest in results]

    def translate_ids(
        self,
        sources: list[list[int]],
        options: SearchOptions | None = None,
        keep_attention: bool = False,
    ) -> list[list[Translation]]:
        """One batch of source ids searched together: `options.nbest` translations each (the
        translator's options by default). A source longer than MAX_SOURCE_TOKENS is read up to
        there; an empty one translates to an empty line."""
        options = options or self.options
        sources = [ids[:MAX_SOURCE_TOKENS] for ids in sources]
        rows = [row for row, ids in enumerate(sources) if ids]
        results = [[Translation("", 0.0)] for _ in sources]
        if not rows:
            return results
        items = [(np.asarray(sources[row], dtype=np.int64), _NO_TARGET, row) for row in rows]
        batch = collate(items).to(self.device)
        vocabulary = self.shortlist.vocabulary(batch.src) if self.shortlist else None
        with self._precision():
            hypotheses = search(
                self.model,
                batch.src,
                batch.src_lengths,
                options,
                BOS_ID,
                EOS_ID,
                self.weights,
                keep_attention,
                vocabulary,
            )
        if not all(hypotheses):  # some sentence's every candidate scored NaN
            raise Seq2SeqError("search found no translation: the model's scores are not finite")
        # the whole batch in one call: SentencePiece starts threads for every list it decodes,
        # 0.15-0.25 ms a call, 7% of greedy search's time on Multi30k if called per sentence
        texts = iter(self.tokenizer.decode_tgt([h.tokens for nbest in hypotheses for h in nbest]))
        for row, nbest in zip(rows, hypotheses, strict=True):
            length = len(sources[row])
            results[row] = [_translation(next(texts), h, length) for h in nbest]
        return results

    def encode(self, sentences: list[str]) -> list[list[int]]:
        """Source ids of each sentence, cut at MAX_SOURCE_TOKENS (with a warning on stderr);
        a blank line has none."""
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

    def source_pieces(self, sentence: str) -> list[str]:
        """The subwords the model reads for `sentence` (cut like in translation)."""
        ids = self.tokenizer.encode_src([sentence])[0][:MAX_SOURCE_TOKENS]
        return [self.tokenizer.src.id_to_piece(i) for i in ids]

    def target_pieces(self, translation: Translation) -> list[str]:
        """The subwords of a translation, with the closing EOS the attention rows include."""
        return [self.tokenizer.tgt.id_to_piece(i) for i in translation.tokens] + ["</s>"]

    def _precision(self) -> torch.autocast:
        """bf16 autocast, or autocast off (also inside a caller's autocast, e.g. Lightning's)."""
        bf16 = self.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)

    def batches(
        self, ids: list[list[int]], batch_tokens: int, progress: bool = False
    ) -> Iterator[list[int]]:
        """The batches translate_nbest searches: lists of indices of the non-empty sentences
        `ids` (source ids, `encode`), similar lengths together, `batch_tokens` source tokens
        each, padding included."""
        non_empty = [index for index, sentence in enumerate(ids) if sentence]
        lengths = np.array([len(ids[i]) for i in non_empty], dtype=np.int64)
        sampler = TokenBatchSampler(
            lengths,
            lengths,
            max(batch_tokens, MAX_SOURCE_TOKENS + 1),
            shuffle=False,
            equal_per_rank=False,
        )
        batches = list(sampler)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="translating", unit="batch", file=sys.stderr)
        for positions in batches:
            yield [non_empty[p] for p in positions]


def search_device(name: str) -> torch.device:
    """The device `name` (cpu, cuda, cuda:N) if this machine has it; a one-line error if not."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise Seq2SeqError(f"device {name!r} is not a device: use cpu, cuda or cuda:N") from error
    if device.type not in ("cpu", "cuda"):
        raise Seq2SeqError(f"device {name!r}: search runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Seq2SeqError(f"--device {name} asked for, but CUDA is not available here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise Seq2SeqError(f"device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def _translation(text: str, hypothesis: Hypothesis, source_length: int) -> Translation:
    attention = None
    if hypothesis.attention is not None:
        attention = hypothesis.attention[:, :source_length].float().cpu().numpy()
    return Translation(text, hypothesis.score, tuple(hypothesis.tokens), attention)
