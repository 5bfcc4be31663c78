import torch

from seq2seq.decoding.greedy import greedy_search, max_output_lengths
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig

BOS, EOS = 2, 3


class TableState:
    """Which sentence each row is and how many steps it has taken; reorderable like the model's."""

    def __init__(self, row: torch.Tensor, position: torch.Tensor) -> None:
        self.row = row
        self.position = position

    def reorder(self, index: torch.Tensor, sentences: torch.Tensor | None = None) -> "TableState":
        return TableState(self.row[index], self.position[index])


def start(batch: int) -> TableState:
    return TableState(torch.arange(batch), torch.zeros(batch, dtype=torch.long))


def table_step(table: torch.Tensor):
    """A step function reading log-probabilities from a (B, L, V) table by sentence and position."""

    def step(state: TableState, tokens: torch.Tensor):
        log_probs = table[state.row, state.position]
        next_state = TableState(state.row, state.position + 1)
        return log_probs, next_state, torch.zeros(len(state.row), 1)

    return step


def log_probs_table(choices: list[list[int]], vocab: int = 6) -> torch.Tensor:
    table = torch.full((len(choices), len(choices[0]), vocab), -5.0)
    for row, tokens in enumerate(choices):
        for position, token in enumerate(tokens):
            table[row, position, token] = -0.1
    return table


def test_stops_at_eos_and_scores_chosen_tokens() -> None:
    table = log_probs_table([[4, 5, EOS, 4], [5, EOS, 4, 4]])
    result = greedy_search(
        table_step(table),
        start(2),
        torch.tensor([4, 4]),
        BOS,
        EOS,
    )
    assert result.tokens == [[4, 5], [5]]
    torch.testing.assert_close(result.scores, torch.tensor([-0.3, -0.2]))


def test_finished_sentences_leave_the_batch() -> None:
    table = log_probs_table([[4, EOS, 4, 4, 4], [4, 4, 4, EOS, 4], [5, 5, EOS, 4, 4]])
    rows_per_step = []
    table_step_function = table_step(table)

    def counting_step(state: TableState, tokens: torch.Tensor):
        rows_per_step.append(tokens.numel())
        return table_step_function(state, tokens)

    result = greedy_search(counting_step, start(3), torch.tensor([5, 5, 5]), BOS, EOS)
    assert result.tokens == [[4], [4, 4, 4], [5, 5]]
    assert rows_per_step == [3, 3, 2, 1]  # sentence 0 leaves after step 2, sentence 2 after 3


def test_maximum_length_per_sentence() -> None:
    table = log_probs_table([[4, 4, 4, 4], [5, 5, 5, 5]])
    result = greedy_search(
        table_step(table),
        start(2),
        torch.tensor([2, 4]),
        BOS,
        EOS,
    )
    assert result.tokens == [[4], [5, 5, 5]]  # EOS counts towards the maximum
    torch.testing.assert_close(result.scores, torch.tensor([-0.1 - 5.0, -0.3 - 5.0]))


def test_max_output_lengths() -> None:
    assert max_output_lengths(torch.tensor([1, 10]), 1.5, 5).tolist() == [6, 20]


def test_batched_equals_one_by_one_on_a_model() -> None:
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        30, 30, embedding_size=8, encoder_hidden_size=8, decoder_hidden_size=8, attention_size=8
    )
    model = Seq2Seq(config).eval()
    src = torch.randint(4, 30, (4, 6))
    lengths = torch.tensor([6, 2, 4, 5])
    limits = max_output_lengths(lengths, 2.0, 3)
    with torch.no_grad():
        batched = greedy_search(
            model.step, model.initial_state(model.encode(src, lengths)), limits, BOS, EOS
        )
        for row in range(4):
            one = slice(row, row + 1)
            alone = greedy_search(
                model.step,
                model.initial_state(model.encode(src[one, : lengths[row]], lengths[one])),
                limits[one],
                BOS,
                EOS,
            )
            assert alone.tokens[0] == batched.tokens[row]
            torch.testing.assert_close(alone.scores[0], batched.scores[row])
