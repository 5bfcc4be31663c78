import torch

from seq2seq.model.attention import BahdanauAttention, padding_bias


def setup_attention():
    torch.manual_seed(0)
    attention = BahdanauAttention(query_size=4, memory_size=6, attention_size=5).double()
    memory = torch.randn(3, 7, 6, dtype=torch.double)
    src_mask = torch.arange(7) < torch.tensor([[7], [2], [5]])
    return attention, memory, src_mask


def test_weights_sum_to_one_and_vanish_on_padding() -> None:
    attention, memory, src_mask = setup_attention()
    query = torch.randn(3, 4, dtype=torch.double)
    context, weights = attention(
        query, attention.project_memory(memory), memory, padding_bias(src_mask, memory.dtype)
    )
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, dtype=torch.double))
    assert weights[~src_mask].abs().max().item() == 0.0
    assert (weights[src_mask] > 0).all()
    torch.testing.assert_close(context, (weights.unsqueeze(-1) * memory).sum(1))


def test_matches_the_formula() -> None:
    attention, memory, src_mask = setup_attention()
    query = torch.randn(3, 4, dtype=torch.double)
    _, weights = attention(
        query, attention.project_memory(memory), memory, padding_bias(src_mask, memory.dtype)
    )
    W, U, v = attention.query_projection, attention.key_projection.weight, attention.score.weight
    for b in range(3):
        length = int(src_mask[b].sum())
        energies = torch.stack(
            [(v @ torch.tanh(W(query[b]) + U @ memory[b, j])).squeeze() for j in range(length)]
        )
        torch.testing.assert_close(weights[b, :length], torch.softmax(energies, 0))


def test_gradcheck() -> None:
    attention, memory, src_mask = setup_attention()
    bias = padding_bias(src_mask, memory.dtype)
    query = torch.randn(3, 4, dtype=torch.double, requires_grad=True)
    memory.requires_grad_()

    def attend(query, memory):
        context, weights = attention(query, attention.project_memory(memory), memory, bias)
        return context, weights

    assert torch.autograd.gradcheck(attend, (query, memory))
