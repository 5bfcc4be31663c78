"""One fake step API for the search tests: next-token log-probabilities from a table.

`fake_step(table)` behaves like `Seq2Seq.step` for a hand-built 'model' whose log-probabilities
depend only on the sentence and the tokens produced so far, so tests can say exactly what each
search must find. Shapes: R rows (hypotheses), t tokens so far, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from seq2seq.decoding.step_api import Sentences

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


def fake_step(
    log_probs_of: LogProbs,
    vocab: int = VOCAB,
    attention_of: Callable[[tuple[int, ...]], list[float]] = lambda prefix: [0.0],
):
    """A step function: `log_probs_of(sentence, tokens after BOS)` gives {token: log-prob};
    tokens it leaves out are impossible. `attention_of(tokens after BOS)`: the attention over
    the source that comes with them (one source token of weight 0 by default)."""

    def step(state: FakeState, tokens: torch.Tensor):
        prefix = torch.cat((state.prefix, tokens.unsqueeze(1)), dim=1)  # (R, t + 1)
        log_probs = torch.full((prefix.shape[0], vocab), -1e9)  # (R, V)
        attention = []
        pairs = zip(state.sentence.tolist(), prefix.tolist(), strict=True)
        for row, (sentence, history) in enumerate(pairs):
            for token, log_prob in log_probs_of(sentence, tuple(history[1:])).items():
                log_probs[row, token] = log_prob
            attention.append(attention_of(tuple(history[1:])))
        return log_probs, FakeState(state.sentence, prefix), torch.tensor(attention)

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


def bounds(
    max_lengths: list[int], min_lengths: list[int] | int = 0, source_lengths: int = 1
) -> Sentences:
    """Sentences for the fake step: each output's longest (EOS included) and shortest length;
    `source_lengths` source tokens each (the fake attends to one)."""
    longest = torch.tensor(max_lengths)
    shortest = torch.as_tensor(min_lengths).expand_as(longest)
    sources = torch.full_like(longest, source_lengths)
    return Sentences(sources, shortest, longest, torch.arange(len(longest)))
