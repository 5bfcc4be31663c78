"""The CUDA path: training steps in fp32 and bf16, the fused encoder, search on the GPU, and a
checkpoint trained on the GPU read on the CPU.

Marked `cuda`; they skip without a GPU (CI has none) and run in bench/gpu_suite.sh. The device
under test is SEQ2SEQ_TEST_DEVICE (default `cuda`): `SEQ2SEQ_TEST_DEVICE=cpu pytest -m cuda`
runs the same checks against the CPU, so the tests themselves are checked where no GPU is.
"""

from __future__ import annotations

import os

import pytest
import torch

from seq2seq.checkpoint import load_model
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.model.autocast import has_fast_bf16
from seq2seq.model.loss import label_smoothed_loss
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig
from seq2seq.translator import Translator
from tests.conftest import trained_shortlist
from tests.models import source_batch

DEVICE = torch.device(os.environ.get("SEQ2SEQ_TEST_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="no CUDA GPU here"
    ),
]
NO_DROPOUT = {"dropout": 0.0, "recurrent_dropout": 0.0, "embedding_dropout": 0.0}


def skip_without_bf16() -> None:
    """bf16 tests need a GPU with bf16; on the CPU they run emulated bf16 (slow, but correct)."""
    if DEVICE.type == "cuda" and not has_fast_bf16(DEVICE):
        pytest.skip(f"{DEVICE} has no bf16")


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 as fp32 on the GPU (no TF32 in cuBLAS or cuDNN) while a test compares with the CPU."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def model(**architecture: object) -> Seq2Seq:
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        src_vocab_size=50,
        tgt_vocab_size=60,
        embedding_size=32,
        encoder_hidden_size=24,
        decoder_hidden_size=40,
        attention_size=16,
        **{**NO_DROPOUT, **architecture},
    )
    return Seq2Seq(config).train()


def training_step(network: Seq2Seq, device: torch.device, bf16: bool = False):
    """Loss and gradients of one teacher-forced step on a fixed batch, on `device`."""
    network = network.to(device)
    network.zero_grad()
    src, lengths = source_batch([9, 4, 7, 2, 6], vocab=50)
    torch.manual_seed(3)
    tgt = torch.randint(4, 60, (5, 8))
    tgt[3, 5:] = PAD_ID
    tgt_in, tgt_out = tgt[:, :-1].to(device), tgt[:, 1:].to(device)
    positions = tgt_out != PAD_ID  # (B, T)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = network(src.to(device), lengths.to(device), tgt_in, positions)  # (N, V)
        loss, _, _ = label_smoothed_loss(logits, tgt_out[positions], 0.1)
    loss.backward()
    return loss.item(), {n: p.grad.float().cpu() for n, p in network.named_parameters()}


@pytest.mark.parametrize("layer_norm", [True, False])
def test_a_training_step_on_the_device_matches_the_cpu_in_fp32(layer_norm: bool) -> None:
    loss_cpu, grads_cpu = training_step(model(layer_norm=layer_norm), torch.device("cpu"))
    loss_device, grads_device = training_step(model(layer_norm=layer_norm), DEVICE)
    assert loss_device == pytest.approx(loss_cpu, rel=1e-5)
    for name, grad in grads_cpu.items():
        torch.testing.assert_close(grads_device[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_a_bf16_training_step_is_finite_and_close_to_fp32() -> None:
    skip_without_bf16()
    loss_fp32, grads_fp32 = training_step(model(), DEVICE)
    loss_bf16, grads_bf16 = training_step(model(), DEVICE, bf16=True)
    assert loss_bf16 == pytest.approx(loss_fp32, rel=0.02)
    for name, grad in grads_fp32.items():
        assert grads_bf16[name].isfinite().all(), name
        cosine = torch.cosine_similarity(grads_bf16[name].flatten(), grad.flatten(), dim=0)
        assert cosine > 0.95, name


def test_the_fused_encoder_equals_the_cell_loop_on_the_device() -> None:
    custom = model(layer_norm=False, fused_encoder=False).eval().to(DEVICE)
    fused = model(layer_norm=False, fused_encoder=True).eval().to(DEVICE)
    fused.load_state_dict(custom.state_dict())
    src, lengths = source_batch([9, 4, 7, 2, 6], vocab=50)
    with torch.no_grad():
        mine, theirs = (m.encode(src.to(DEVICE), lengths.to(DEVICE)) for m in (custom, fused))
    torch.testing.assert_close(theirs.memory, mine.memory, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beam_size", [1, 5])
def test_search_on_the_device_translates_like_the_cpu(trained, beam_size: int) -> None:
    lines = (trained.corpus / "test.de").read_text().splitlines()
    on_cpu = Translator.from_checkpoint(trained.checkpoint, "cpu", "fp32")
    on_device = Translator.from_checkpoint(trained.checkpoint, str(DEVICE), "fp32")
    assert on_device.translate(lines, beam_size) == on_cpu.translate(lines, beam_size)


def test_search_with_a_shortlist_on_the_device_translates_like_the_cpu(trained) -> None:
    """The shortlist's tables stay on the CPU; each batch's vocabulary goes to the device."""
    lines = (trained.corpus / "test.de").read_text().splitlines()
    shortlist = trained_shortlist(trained, per_word=3)
    on_cpu, on_device = (
        Translator.from_checkpoint(trained.checkpoint, device, "fp32", shortlist)
        for device in ("cpu", str(DEVICE))
    )
    assert on_device.translate(lines, 5) == on_cpu.translate(lines, 5)


def test_bf16_search_on_the_device_keeps_the_translations(trained) -> None:
    skip_without_bf16()
    lines = (trained.corpus / "test.de").read_text().splitlines()
    fp32 = Translator.from_checkpoint(trained.checkpoint, str(DEVICE), "fp32").translate(lines, 5)
    bf16 = Translator.from_checkpoint(trained.checkpoint, str(DEVICE), "bf16").translate(lines, 5)
    same = sum(a == b for a, b in zip(fp32, bf16, strict=True))
    assert same >= 0.9 * len(lines)


def test_a_run_trained_on_the_device_in_bf16_translates_on_the_cpu(tmp_path) -> None:
    from seq2seq.lightning_cli import main
    from tests.training_helpers import reversal_corpus, tiny_run_args

    skip_without_bf16()
    corpus = reversal_corpus(tmp_path / "corpus", train_pairs=300)
    settings = {
        "trainer.accelerator": "gpu" if DEVICE.type == "cuda" else "cpu",
        "trainer.precision": "bf16-mixed",
        "trainer.max_steps": 5,
        "trainer.limit_val_batches": 0,
    }
    main(["fit", *tiny_run_args(corpus, tmp_path, **settings)])
    loaded = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt", "cpu")
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    assert all(p.isfinite().all() for p in loaded.model.parameters())
    translator = Translator(loaded.model, loaded.tokenizer, "fp32", loaded.search)
    assert len(translator.translate(["ab cd ef", ""], beam_size=2)) == 2
