"""The benchmarks' own arithmetic: the analytic FLOPs that model FLOPs utilization divides by."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from seq2seq.checkpoint import load_model
from seq2seq.data.batch import collate
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.decoding.search import SearchOptions
from seq2seq.model.loss import label_smoothed_loss
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig
from seq2seq.translator import Translator
from tests.conftest import trained_shortlist

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench_module(name: str):
    """bench/NAME.py as a module, imported as running it imports it: bench/ first on sys.path,
    for the sibling modules it imports."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def _batch(vocab_size: int, generator: np.random.Generator):
    """Six pairs of different lengths: padding on both sides, as real batches have."""
    lengths = [(7, 9), (5, 6), (9, 4), (3, 8), (6, 6), (8, 2)]
    items = [
        (generator.integers(4, vocab_size, s), generator.integers(4, vocab_size, t), index)
        for index, (s, t) in enumerate(lengths)
    ]
    return collate(items)


@pytest.mark.parametrize(("layers", "scored"), [(1, None), (2, None), (1, 23)])
def test_step_flops_match_torch_flop_counter(layers: int, scored: int | None) -> None:
    """Forward, loss and backward of a step under torch's FLOP counter (every mm, bmm and addmm
    as dispatched) against the analytic count the utilization divides by; with the output
    layer over all 50 target words or over `scored` of them."""
    config = Seq2SeqConfig(
        src_vocab_size=50,
        tgt_vocab_size=50,
        embedding_size=12,
        encoder_hidden_size=10,
        encoder_layers=layers,
        decoder_hidden_size=16,
        decoder_layers=layers,
        attention_size=14,
        share_embeddings=True,
    )
    torch.manual_seed(0)
    model = Seq2Seq(config).train()
    if scored:
        model.restrict_output(torch.arange(50) < scored)
    batch = _batch(config.tgt_vocab_size, np.random.default_rng(0))
    positions = batch.tgt_out != PAD_ID  # (B, T)
    with FlopCounterMode(display=False) as counter:
        logits = model(batch.src, batch.src_lengths, batch.tgt_in, positions)  # (N, V')
        target = model.target_columns(batch.tgt_out[positions])
        loss, _, _ = label_smoothed_loss(logits, target, 0.1)
        loss.backward()
    analytic = _bench_module("train_throughput").step_flops(config, batch, scored)
    # the one GEMM the analytic count has and autograd skips: the gradient into the encoder's
    # all-zero initial state, one recurrent product per layer and direction (measured: exactly it)
    b, h = batch.src.shape[0], config.encoder_hidden_size
    skipped = 2 * b * h * 4 * h * 2 * layers
    assert counter.get_total_flops() == analytic - skipped


def test_gemm_seconds_finds_the_gemms_of_a_step() -> None:
    bench = _bench_module("train_throughput")
    config = Seq2SeqConfig(src_vocab_size=50, tgt_vocab_size=50, share_embeddings=True)
    model = Seq2Seq(config).train()
    optimizer = torch.optim.Adam(model.parameters())
    batches = [_batch(config.tgt_vocab_size, np.random.default_rng(seed)) for seed in (1, 2)]
    gemm, wall = bench.gemm_seconds(model, optimizer, batches, "fp32", "cpu", 64)
    assert 0 < gemm < wall


def test_gemm_census_of_training_counts_the_steps_after_the_first() -> None:
    bench = _bench_module("train_throughput")
    config = Seq2SeqConfig(src_vocab_size=50, tgt_vocab_size=50, share_embeddings=True)
    model = Seq2Seq(config).train()
    optimizer = torch.optim.Adam(model.parameters())
    batch = _batch(config.tgt_vocab_size, np.random.default_rng(1))
    once = bench.gemm_census(model, optimizer, [batch], "fp32", "cpu", 64)
    twice = bench.gemm_census(model, optimizer, [batch, batch], "fp32", "cpu", 64)
    assert once["gemm_calls"] == 0  # the first step is not counted
    assert twice["gemm_calls"] > twice["distinct_shapes"] == once["distinct_shapes"] > 10
    assert twice["hit_rate"]["1024"] == 1.0  # the same batch again: every shape seen


def test_hit_rate_replays_a_least_recently_used_cache() -> None:
    hit_rate = _bench_module("shape_census").hit_rate
    keys = ["a", "b", "c", "a", "c", "b"]
    assert hit_rate(keys, capacity=2, counted_from=0) == 1 / 6  # only c's second call hits
    assert hit_rate(keys, capacity=3, counted_from=0) == 3 / 6
    assert hit_rate(keys, capacity=3, counted_from=3) == 1.0


@pytest.mark.parametrize("multiple", [1, 8])
def test_gemm_census_sees_the_output_layer_rows_padded_forward_and_backward(multiple: int) -> None:
    census = _bench_module("gemm_shapes")
    config = Seq2SeqConfig(src_vocab_size=53, tgt_vocab_size=53, share_embeddings=True)
    model = Seq2Seq(config).train()
    batch = _batch(config.tgt_vocab_size, np.random.default_rng(0))
    positions = batch.tgt_out != PAD_ID  # (B, T): N = 41 target tokens
    recorder = census.GemmShapes()
    with recorder:
        logits = model(batch.src, batch.src_lengths, batch.tgt_in, positions, multiple)
        label_smoothed_loss(logits, batch.tgt_out[positions], 0.1)[0].backward()
    recorder.end_step()
    output_layer = [  # forward (N', E) x (E, V) and backward (N', V) x (V, E) with V = 53 words
        operands[-2][0][0] for _, operands in recorder.keys if 53 in operands[-1][0]
    ]
    rows = -(-batch.num_tgt_tokens // multiple) * multiple
    assert batch.num_tgt_tokens == 41 and output_layer == [rows, rows]
    summary = census.summary(recorder, counted_from=0)
    assert summary["gemm_calls"] == len(recorder.keys) > summary["distinct_shapes"] > 2


def test_decode_speed_counts_the_words_a_shortlist_leaves(trained) -> None:
    """One batch of two sentences: its output layer computes the union of their words, and a
    sentence may use its own."""
    decode_speed = _bench_module("decode_speed")
    tokenizer = load_model(trained.checkpoint).tokenizer
    shortlist = trained_shortlist(trained, per_word=2, frequent=0)
    full = Translator.from_checkpoint(trained.checkpoint)
    assert decode_speed.shortlist_words(full, ["ab cd"], 1000) is None
    translator = Translator.from_checkpoint(trained.checkpoint, shortlist=shortlist)
    lines = ["ab cd gh", "ef"]
    own = [
        set(shortlist.vocabulary(torch.tensor(tokenizer.encode_src([line]))).words.tolist())
        for line in lines
    ]
    expected = {"batch": len(own[0] | own[1]), "sentence": round((len(own[0]) + len(own[1])) / 2)}
    assert decode_speed.shortlist_words(translator, lines, 1000) == expected
    assert own[0] != own[1]


def test_decode_speed_profiles_where_search_time_goes(trained) -> None:
    decode_speed = _bench_module("decode_speed")
    translator = Translator.from_checkpoint(trained.checkpoint)
    lines = (trained.corpus / "test.de").read_text().splitlines()
    found = decode_speed.profiled(translator, lines, 2, 1000)
    assert (found["beam"], found["batch_tokens"], found["shortlist"]) == (2, 1000, False)
    assert 0 < found["gemm_share"] < 1 and len(found["top_ops"]) == 6
    assert sum(found["top_ops"].values()) <= 1.001
    assert list(found["top_ops"].values()) == sorted(found["top_ops"].values(), reverse=True)


def test_decode_speed_census_sees_fewer_shapes_and_more_work_with_a_row_ladder(trained) -> None:
    decode_speed = _bench_module("decode_speed")
    translator = Translator.from_checkpoint(trained.checkpoint)
    lines = (trained.corpus / "test.de").read_text().splitlines()
    plain, padded = (
        decode_speed.census(translator, lines, decode_speed.beam_search(translator, 2, r), 1000)
        for r in (0, 1)
    )
    # padded source positions are more encoder steps: more calls, of fewer shapes
    assert padded["gemm_calls"] >= plain["gemm_calls"] > plain["distinct_shapes"]
    assert padded["distinct_shapes"] < plain["distinct_shapes"]
    assert padded["gemm_gflop"] > plain["gemm_gflop"] > 0
    assert plain["hit_rate"]["1024"] < padded["hit_rate"]["1024"] <= 1


def test_gemm_census_counts_each_gemms_flops() -> None:
    recorder = _bench_module("shape_census").GemmShapes()
    a, b = torch.ones(3, 4), torch.ones(4, 5)
    with recorder:
        torch.mm(a, b)
        torch.addmm(torch.ones(5), a, b)
        torch.bmm(torch.ones(2, 3, 4), torch.ones(2, 4, 5))
    assert recorder.flops == [2 * 3 * 4 * 5, 2 * 3 * 4 * 5, 2 * 2 * 3 * 4 * 5]


def test_decode_speed_searches_with_the_checkpoints_settings_and_the_beam_asked_for() -> None:
    decode_speed = _bench_module("decode_speed")
    tested = SearchOptions(beam_size=4, nbest=2, alpha=1.0, coverage_penalty=0.1)
    translator = SimpleNamespace(options=tested)
    found = decode_speed.beam_search(translator, 1, row_buckets=8)
    assert found == replace(tested, beam_size=1, nbest=1, row_buckets=8)
