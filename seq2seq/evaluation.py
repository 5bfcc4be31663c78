"""BLEU, chrF and TER of detokenized hypotheses against one or more references, as sacreBLEU
computes and prints them, with the signature that makes each number reproducible (Post, 2018).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sacrebleu.metrics import BLEU, CHRF, TER

from seq2seq.errors import Seq2SeqError

TOKENIZERS: tuple[str, ...] = tuple(BLEU.TOKENIZERS)  # for BLEU; 13a is sacreBLEU's default


@dataclass(frozen=True)
class Score:
    """One metric's corpus score, sacreBLEU's line for it and its signature."""

    metric: str
    score: float
    signature: str
    line: str  # as `sacrebleu -f text` prints it: signature = score and details
    details: dict[str, object] = field(default_factory=dict)  # BLEU: precisions, BP, lengths

    def __str__(self) -> str:
        return self.line


def score_corpus(
    hypotheses: list[str], references: list[list[str]], tokenize: str = "13a"
) -> list[Score]:
    """Corpus-level BLEU (cased, `tokenize`), chrF and TER against reference streams (each a
    list of lines aligned with the hypotheses), as sacreBLEU's defaults compute them."""
    for stream in references:
        if len(stream) != len(hypotheses):
            raise Seq2SeqError(
                f"{len(hypotheses)} hypotheses but {len(stream)} references: the files must align"
            )
    if not hypotheses:
        raise Seq2SeqError("nothing to score: the files are empty")
    return [_score(metric, hypotheses, references) for metric in _metrics(tokenize)]


def _metrics(tokenize: str) -> list:
    try:
        return [BLEU(tokenize=tokenize), CHRF(), TER()]
    except (RuntimeError, ImportError) as error:  # a tokenizer whose extra is not installed
        first = " ".join(str(error).split()).split(". ")[0]
        raise Seq2SeqError(f"--tokenize {tokenize}: {first}") from error


def _score(metric, hypotheses: list[str], references: list[list[str]]) -> Score:
    result = metric.corpus_score(hypotheses, references)
    signature = str(metric.get_signature())
    details = {}
    if isinstance(metric, BLEU):
        details = {
            "precisions": [round(p, 4) for p in result.precisions],
            "bp": round(result.bp, 4),
            "ratio": round(result.ratio, 4),
            "hyp_len": result.sys_len,
            "ref_len": result.ref_len,
        }
    line = result.format(signature=signature)
    return Score(result.name, round(result.score, 4), signature, line, details)
