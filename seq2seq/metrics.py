"""Corpus BLEU and chrF accumulated over evaluation batches and summed across ranks, for
validation and testing (torchmetrics); seq2seq/evaluation.py scores files without them."""

from __future__ import annotations

import torch
from sacrebleu.metrics import CHRF
from torch import nn
from torchmetrics import Metric
from torchmetrics.text import SacreBLEUScore


class TranslationScores(nn.Module):
    """BLEU (sacreBLEU, 13a, cased) and chrF of a split's detokenized hypotheses against the
    original reference lines, as percentages."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics = nn.ModuleDict({"bleu": SacreBLEUScore(tokenize="13a"), "chrf": CorpusChrF()})

    def update(self, hypotheses: list[str], references: list[str]) -> None:
        """Add a batch: `references[i]` is the one reference of `hypotheses[i]`."""
        for metric in self.metrics.values():
            metric.update(hypotheses, [[reference] for reference in references])

    def compute_and_reset(self) -> dict[str, torch.Tensor]:
        """{"bleu", "chrf"} over everything added (on every rank), then start afresh."""
        scores = {name: 100 * metric.compute() for name, metric in self.metrics.items()}
        for metric in self.metrics.values():
            metric.reset()
        return scores


class CorpusChrF(Metric):
    """sacreBLEU's corpus chrF as a torchmetrics Metric, on a 0-1 scale.

    Per-sentence character n-gram statistics are summed over batches (and over ranks, as a
    summed tensor state) and the score is computed from the sums, as sacreBLEU's `corpus_score`
    does; torchmetrics' own CHRFScore is many times slower, most of a validation pass.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self._chrf = CHRF()
        size = len(self._chrf._extract_corpus_statistics(["a"], [["a"]])[0])
        self.add_state("statistics", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, hypotheses: list[str], references: list[list[str]]) -> None:
        """`references[i]` holds the references of `hypotheses[i]`."""
        if not hypotheses:
            return
        streams = [list(stream) for stream in zip(*references, strict=True)]
        per_sentence = self._chrf._extract_corpus_statistics(hypotheses, streams)
        self.statistics += torch.tensor(per_sentence, dtype=torch.float64).sum(0)

    def compute(self) -> torch.Tensor:
        """Corpus chrF from the summed statistics, 0-1."""
        statistics = [int(value) for value in self.statistics.tolist()]
        return torch.tensor(self._chrf._compute_score_from_stats(statistics).score / 100)
