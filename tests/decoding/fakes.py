"""One fake step API for the search tests: next-token log-probabilities from a table.

`fake_step(table)` behaves like `Seq2Seq.step` for a hand-built 'model' whose log-probabilities
depend only on the sentence and the tokens produced so far, so tests can say exactly what each
search must find. Shapes: R rows (hypotheses), t tokens so far, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

BOS, EOS, A, B, C = 2, 3, 4, 5, 6
VOCAB = 7
LogProbs = Callable[[int, tuple[int, ...]], dict[int, float]]


class FakeState:
    """The sentence each row searches and its tokens so far; reorderable like DecoderState."""

    def __init__(self, sentence: torch.Tensor, prefix: torch.Tensor) -> None:
        self.sentence = sentence  # (R,)
        self.prefix = prefix  # (R, t), BOS first once a step has run

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> FakeState:
        return FakeState(self.sentence[rows], self.prefix[rows])


def start(sentences: int = 1) -> FakeState:
    return FakeState(torch.arange(sentences), torch.empty(sentences, 0, dtype=torch.long))


def fake_step(log_probs_of: LogProbs, vocab: int = VOCAB):
    """A step function: `log_probs_of(sentence, tokens after BOS)` gives {token: log-prob};
    tokens it leaves out are impossible."""

    def step(state: FakeState, tokens: torch.Tensor):
        prefix = torch.cat((state.prefix, tokens.unsqueeze(1)), dim=1)  # (R, t + 1)
        log_probs = torch.full((prefix.shape[0], vocab), -1e9)  # (R, V)
        pairs = zip(state.sentence.tolist(), prefix.tolist(), strict=True)
        for row, (sentence, history) in enumerate(pairs):
            for token, log_prob in log_probs_of(sentence, tuple(history[1:])).items():
                log_probs[row, token] = log_prob
        return log_probs, FakeState(state.sentence, prefix), torch.zeros(prefix.shape[0], 1)

    return step


def by_prefix(table: dict[tuple[int, ...], dict[int, float]]) -> LogProbs:
    """Probabilities by prefix alone, the same for every sentence (EOS after unknown ones)."""
    return lambda sentence, prefix: {
        token: math.log(p) for token, p in table.get(prefix, {EOS: 1.0}).items()
    }


def by_position(choices: list[list[int]], vocab: int = VOCAB) -> LogProbs:
    """Sentence s prefers `choices[s][t]` at step t (log-prob -0.1), every other token -5."""

    def log_probs_of(sentence: int, prefix: tuple[int, ...]) -> dict[int, float]:
        preferred = choices[sentence][len(prefix)]
        return {token: -0.1 if token == preferred else -5.0 for token in range(vocab)}

    return log_probs_of
