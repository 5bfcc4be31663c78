"""bf16 autocast: weights cast once per pass, and the same model function as fp32."""

import pytest
import torch

from seq2seq.model.autocast import autocast_dtype, cast_once, has_fast_bf16
from seq2seq.model.cells import RecurrentCell
from seq2seq.model.loss import label_smoothed_loss
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig


def bf16_autocast() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_cast_once_follows_the_autocast_state() -> None:
    weight = torch.randn(4, 3, requires_grad=True)
    assert cast_once(weight) is weight and autocast_dtype("cpu") is None
    with bf16_autocast():
        cast = cast_once(weight)
        assert autocast_dtype("cpu") == torch.bfloat16
        assert cast.dtype == torch.bfloat16
        assert cast_once(torch.arange(3)).dtype == torch.long  # integers stay as they are
    cast.float().sum().backward()
    assert weight.grad.dtype == torch.float32  # the gradient reaches the fp32 weight


def test_the_loops_take_each_recurrent_weight_once_per_pass(monkeypatch) -> None:
    """Autocast would cast a weight used at every step once per step: the encoder and decoder
    loops take `recurrent_weight()` once per layer and pass."""
    calls = []
    original = RecurrentCell.recurrent_weight

    def counting(cell: RecurrentCell) -> torch.Tensor:
        calls.append(cell)
        return original(cell)

    monkeypatch.setattr(RecurrentCell, "recurrent_weight", counting)
    torch.manual_seed(0)
    config = Seq2SeqConfig(src_vocab_size=40, tgt_vocab_size=40, encoder_layers=2)
    model = Seq2Seq(config).train()
    src = torch.randint(4, 40, (3, 9))
    tgt = torch.randint(4, 40, (3, 11))
    model(src, torch.tensor([9, 9, 9]), tgt)
    assert len(calls) == 3  # two encoder layers, one decoder layer; not 9 + 9 + 11 steps


@pytest.mark.parametrize("layer_norm", [True, False])
def test_bf16_autocast_step_matches_fp32(layer_norm: bool) -> None:
    """Loss and every gradient of a training step under bf16 autocast stay close to fp32's
    (bf16 keeps 8 bits of mantissa; measured: 0.3-5.6% relative error per gradient, the same
    with the recurrent weights cast once per pass as once per step)."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        src_vocab_size=300,
        tgt_vocab_size=300,
        embedding_size=64,
        encoder_hidden_size=64,
        decoder_hidden_size=128,
        attention_size=64,
        layer_norm=layer_norm,
        embedding_dropout=0.0,
        dropout=0.0,
        recurrent_dropout=0.0,
    )
    model = Seq2Seq(config).train()
    torch.manual_seed(1)
    lengths = torch.tensor([12, 9, 12, 5])
    src = torch.randint(4, 300, (4, 12))
    src[torch.arange(12) >= lengths.unsqueeze(1)] = 0
    tgt_in, tgt_out = torch.randint(4, 300, (2, 4, 10))

    def loss_and_gradients(autocast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(src, lengths, tgt_in)  # (B, T, V)
        loss, _, _ = label_smoothed_loss(logits.flatten(0, 1), tgt_out.flatten(), 0.1)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    loss32, grads32 = loss_and_gradients(False)
    loss16, grads16 = loss_and_gradients(True)
    assert loss16.dtype == torch.float32
    torch.testing.assert_close(loss16, loss32, rtol=1e-2, atol=0.0)
    for name, grad in grads32.items():
        assert grads16[name].dtype == torch.float32, name
        error = (grads16[name] - grad).norm() / grad.norm()
        assert error < 0.1, f"{name}: relative gradient error {error:.3f}"


def test_search_step_under_autocast_gives_fp32_log_probabilities_close_to_fp32() -> None:
    """Search weights built under autocast are bf16 and the step's log-probabilities fp32 and
    close to an fp32 search's; fp32 search weights built afterwards are exactly fp32's."""
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=60, tgt_vocab_size=60)).eval()
    src, lengths = torch.randint(4, 60, (2, 6)), torch.tensor([6, 6])
    tokens = torch.tensor([5, 7])

    def step(search_weights):
        return model.step(model.initial_state(model.encode(src, lengths), search_weights), tokens)

    with torch.no_grad():
        plain = step(model.search_weights())
        with bf16_autocast():
            low_weights = model.search_weights()
            low = step(low_weights)
        again = step(model.search_weights())
    assert low_weights.embedding_projections.dtype == torch.bfloat16
    assert low.log_probs.dtype == torch.float32
    torch.testing.assert_close(low.log_probs, plain.log_probs, rtol=0.0, atol=0.05)
    torch.testing.assert_close(again.log_probs, plain.log_probs, rtol=0.0, atol=0.0)


@pytest.mark.parametrize(("capability", "fast"), [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_cuda_bf16_is_fast_from_ampere_on(capability: tuple, fast: bool, monkeypatch) -> None:
    """Turing (7.5) emulates bf16, which torch.cuda.is_bf16_supported() counts as support."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert has_fast_bf16(torch.device("cuda")) is fast


def test_cuda_bf16_is_not_fast_without_a_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not has_fast_bf16(torch.device("cuda"))
