"""BLEU, chrF and TER of detokenized hypotheses against one reference each, with the sacreBLEU
signature that makes each number reproducible (Post, 2018)."""

from __future__ import annotations

from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF, TER

from seq2seq.errors import Seq2SeqError


@dataclass(frozen=True)
class Score:
    """One metric's corpus score and the signature that reproduces it."""

    metric: str
    score: float
    signature: str

    def __str__(self) -> str:
        return f"{self.metric} = {self.score:.2f}  ({self.signature})"


def score_corpus(hypotheses: list[str], references: list[str]) -> list[Score]:
    """Corpus-level BLEU (13a, cased), chrF and TER, as sacreBLEU's defaults compute them."""
    if len(hypotheses) != len(references):
        raise Seq2SeqError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: the files must align"
        )
    if not hypotheses:
        raise Seq2SeqError("nothing to score: the files are empty")
    scores = []
    for metric in (BLEU(), CHRF(), TER()):
        result = metric.corpus_score(hypotheses, [references])
        scores.append(Score(result.name, round(result.score, 4), str(metric.get_signature())))
    return scores
