import pytest
from sacrebleu.metrics import CHRF

from seq2seq.metrics import CorpusChrF

HYPOTHESES = ["a man rides a horse .", "two dogs play in the snow", "", "Ein Mann läuft ."]
REFERENCES = ["a man is riding a horse .", "two dogs are playing in snow .", "a cat", "A man runs."]


def test_corpus_chrf_equals_sacrebleu_over_several_updates() -> None:
    metric = CorpusChrF()
    metric.update(HYPOTHESES[:1], [[r] for r in REFERENCES[:1]])
    metric.update([], [])
    metric.update(HYPOTHESES[1:], [[r] for r in REFERENCES[1:]])
    expected = CHRF().corpus_score(HYPOTHESES, [REFERENCES]).score / 100
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-6)  # float32


def test_state_is_a_sum_so_ranks_can_add_their_states() -> None:
    whole, first, second = CorpusChrF(), CorpusChrF(), CorpusChrF()
    whole.update(HYPOTHESES, [[r] for r in REFERENCES])
    first.update(HYPOTHESES[:2], [[r] for r in REFERENCES[:2]])
    second.update(HYPOTHESES[2:], [[r] for r in REFERENCES[2:]])
    assert (first.statistics + second.statistics).equal(whole.statistics)
    first.reset()
    assert float(first.statistics.abs().sum()) == 0.0
