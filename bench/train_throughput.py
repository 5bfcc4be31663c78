"""Training throughput of the reference model on real Multi30k batches, and its FLOPs utilization.

One training step = forward, label-smoothed loss, backward, clipping at norm 1, Adam update,
exactly what TranslationModule does minus Lightning's bookkeeping. After warm-up steps, timed
steps run for every variant in alternating rounds (drift of the machine hits all alike). For
each variant it reports target tokens/s (subwords + EOS, no padding), sentences/s, the median
step time, the analytic FLOPs of a step (GEMMs as run: recurrences over the padded batch, the
output layer over real target positions; backward = 2 x forward), the GEMM peak measured in
this process (torch.matmul at the model's own shapes) and the ratio. A last, profiled pass over
the batches tells how much of a step the GEMMs take and what utilization the GEMMs alone reach
as dispatched (`mfu_gemms_alone`): the bound of any work on the rest of the step. Not for
`fused`, whose encoder GEMMs run inside torch's fused LSTM op (oneDNN's RNN on the CPU).

Variants: `fused` (no layer norm, no dropout: the encoder runs torch's fused LSTM kernel) and
`ln_dropout` (the reference: layer norm and variational dropout), each in fp32 and, where the
device has fast bf16 (CUDA, or a CPU with AVX-512 BF16 / AMX), bf16 autocast as Lightning's
`bf16-mixed` runs it (no autocast weight cache); each with the output layer's rows padded to
every multiple of --output-rows-multiples (training's shape bucketing; 1: none); each with the
output layer over every --output-vocabularies: `targets` (as training runs by default: the
target words of the training corpus alone) and `full` (every word). The JSON also gives the
batches' padding: source and target positions, and each variant's output-layer rows, beyond the
real ones, how many words the output layer scores, and a GEMM census of one more pass
(`gemm_census`, shape_census.py: distinct GEMM shapes and the hit rates of shape-keyed caches,
oneDNN's bf16 primitives or CUDA graphs, over the steps after the first). Prints JSON.

The model is the architecture of the training configs named by --config (later files
override earlier ones, as in train.py), the reference model by default.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/train_throughput.py [--steps 10] \
        [--config configs/multi30k_de_en.yaml --config configs/large.yaml] [--device cuda] \
        [--output-rows-multiples 1,64] [--output-vocabularies targets,full]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import resource
import statistics
import sys
import time

import torch
import yaml
from shape_census import GemmShapes, summary  # bench/: first on sys.path
from torch.profiler import ProfilerActivity, profile

from seq2seq.allocator import keep_freed_memory
from seq2seq.data.batch import Batch
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.datamodule import TranslationDataModule
from seq2seq.model.autocast import has_fast_bf16
from seq2seq.model.decoder import padded_count
from seq2seq.model.loss import label_smoothed_loss
from seq2seq.model.seq2seq import OUTPUT_ROWS_MULTIPLE, Seq2Seq, Seq2SeqConfig
from seq2seq.schedules import build_optimizer

NO_DROPOUT = {"embedding_dropout": 0.0, "dropout": 0.0, "recurrent_dropout": 0.0}
GEMM_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")
VARIANTS = {
    "fused": {"layer_norm": False, "fused_encoder": True, **NO_DROPOUT},
    "ln_dropout": {"layer_norm": True},  # the config as it trains: its dropout rates
}


def architecture(config_paths: list[str]) -> dict:
    """model.architecture of training configs, later files overriding earlier ones."""
    merged = {}
    for path in config_paths:
        with open(path) as file:
            merged.update(yaml.safe_load(file).get("model", {}).get("architecture", {}))
    return merged


def training_batches(count: int, max_tokens: int, data_dir: str, device: str) -> list[Batch]:
    return training_data(count, max_tokens, data_dir, device)[0]


def training_data(
    count: int, max_tokens: int, data_dir: str, device: str
) -> tuple[list[Batch], torch.Tensor]:
    """The first `count` training batches of Multi30k, and the (V,) target words training
    scores (TranslationDataModule.target_words)."""
    datamodule = TranslationDataModule(data_dir=data_dir, max_tokens=max_tokens)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append(batch.to(device))
        if len(batches) == count:
            break
    return batches, datamodule.target_words()


def step_flops(config: Seq2SeqConfig, batch: Batch, scored_words: int | None = None) -> float:
    """GEMM FLOPs of one training step as run (forward x 3): the recurrences over the padded
    batch, every encoder and decoder layer, the output layer over the real target positions
    only and over `scored_words` (default: the whole target vocabulary). tests/test_bench.py
    checks it against torch's FLOP counter."""
    b, s = batch.src.shape
    t = batch.tgt_in.shape[1]
    e, h, d, a = (
        config.embedding_size,
        config.encoder_hidden_size,
        config.decoder_hidden_size,
        config.attention_size,
    )
    v, g, memory = scored_words or config.tgt_vocab_size, 4, 2 * config.encoder_hidden_size
    encoder = 0
    for layer in range(config.encoder_layers):
        inputs = e if layer == 0 else memory
        encoder += 2 * (2 * b * s * inputs * g * h + 2 * b * s * h * g * h)
    attention_keys = 2 * b * s * memory * a
    bridge = 2 * b * memory * d * config.decoder_layers
    decoder_step = (
        2 * b * (e + memory) * g * d  # embedding and context into the first layer's gates
        + 2 * b * d * g * d * (config.decoder_layers - 1)  # each higher layer's input
        + 2 * b * d * g * d * config.decoder_layers  # recurrent
        + 2 * b * d * a  # query
        + 2 * b * s * a  # scores
        + 2 * b * s * memory  # context
    )
    positions = batch.num_tgt_tokens
    output = 2 * positions * (d + memory + e) * e + 2 * positions * e * v
    forward = encoder + attention_keys + bridge + t * decoder_step + output
    return 3.0 * forward


def batch_padding(batches: list[Batch]) -> dict[str, float]:
    """Padded source and target positions beyond the real ones, as a share of the real ones."""
    sources = sum(int(b.src_lengths.sum()) for b in batches)
    targets = sum(b.num_tgt_tokens for b in batches)
    return {
        "source": round(sum(b.src.numel() for b in batches) / sources - 1, 4),
        "target": round(sum(b.tgt_out.numel() for b in batches) / targets - 1, 4),
    }


def output_rows_padding(batches: list[Batch], multiple: int) -> float:
    """The output layer's padding rows (rows rounded up to `multiple`) over its real rows."""
    real = [b.num_tgt_tokens for b in batches]
    return sum(padded_count(n, multiple) for n in real) / sum(real) - 1


def gemm_peak(config: Seq2SeqConfig, batch: Batch, device: str, dtype: torch.dtype) -> float:
    """Highest FLOP/s of torch.matmul over the model's large GEMM shapes."""
    b, s = batch.src.shape
    t = batch.tgt_in.shape[1]
    e, h, d = config.embedding_size, config.encoder_hidden_size, config.decoder_hidden_size
    shapes = [
        (b * t, e, config.tgt_vocab_size),  # output projection
        (b * s, e, 8 * h),  # encoder input projection, both directions
        (b * t, d + 2 * h + e, e),  # pre-output
        (b, d, 4 * d),  # one decoder recurrent step
    ]
    best = 0.0
    for m, k, n in shapes:
        left = torch.randn(m, k, device=device, dtype=dtype)
        right = torch.randn(k, n, device=device, dtype=dtype)
        for _ in range(3):
            torch.matmul(left, right)
        for _ in range(5):  # the best of five trials: the peak, not the machine's noise
            _synchronize(device)
            repeats, start = 10, time.perf_counter()
            for _ in range(repeats):
                torch.matmul(left, right)
            _synchronize(device)
            best = max(best, 2 * m * k * n * repeats / (time.perf_counter() - start))
    return best


def train_step(
    model,
    optimizer,
    batch: Batch,
    precision: str,
    device: str,
    rows_multiple: int = OUTPUT_ROWS_MULTIPLE,
) -> float:
    start = time.perf_counter()
    autocast = (  # as Lightning's bf16-mixed plugin: no weight cache
        torch.autocast(device.split(":")[0], dtype=torch.bfloat16, cache_enabled=False)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    positions = batch.tgt_out != PAD_ID  # (B, T)
    with autocast:
        logits = model(batch.src, batch.src_lengths, batch.tgt_in, positions, rows_multiple)
    target = model.target_columns(batch.tgt_out[positions])  # (N,) as TranslationModule.loss
    loss, _, _ = label_smoothed_loss(logits, target, 0.1)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _synchronize(device)
    return time.perf_counter() - start


def gemm_seconds(model, optimizer, batches: list[Batch], precision: str, device: str, rows: int):
    """(seconds inside GEMM ops, wall seconds) of a profiled pass of training steps. On the CPU a
    GEMM op's self time includes what oneDNN spends building a primitive for a new bf16 shape."""
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        wall = sum(train_step(model, optimizer, b, precision, device, rows) for b in batches)
    events = [event for event in profiler.key_averages() if event.key in GEMM_OPS]
    gemm = sum(e.device_time_total if cuda else e.self_cpu_time_total for e in events) / 1e6
    return gemm, wall


def gemm_census(model, optimizer, batches: list[Batch], precision: str, device: str, rows: int):
    """One more pass of training steps under the GEMM census (shape_census.py): GEMM calls and
    distinct shapes, and the hit rates of shape-keyed caches that start empty, counted over the
    steps after the first."""
    recorder = GemmShapes()
    with recorder:
        for batch in batches:
            train_step(model, optimizer, batch, precision, device, rows)
            recorder.end_step()
    return summary(recorder, recorder.step_ends[0])


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def precisions(device: str) -> list[str]:
    return ["fp32", "bf16"] if has_fast_bf16(torch.device(device)) else ["fp32"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=2400, help="batch budget (reference)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--config",
        action="append",
        help="training config(s) whose architecture to time (default: the reference model)",
    )
    parser.add_argument("--data-dir", default="data")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--output-rows-multiples",
        default=str(OUTPUT_ROWS_MULTIPLE),
        help="comma-separated: the output layer's rows padded to each (1: none); default: "
        "training's",
    )
    parser.add_argument(
        "--output-vocabularies",
        default="targets",
        help="comma-separated: what the output layer scores, `targets` (the training targets' "
        "words, as training by default) and/or `full`",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as train.py and the seq2seq command run
    sizes = architecture(args.config or ["configs/multi30k_de_en.yaml"])
    batches, words = training_data(args.steps, args.max_tokens, args.data_dir, args.device)
    runs = {}
    for name in args.variants.split(","):
        options = VARIANTS[name]
        for precision, rows, vocabulary in itertools.product(
            precisions(args.device),
            map(int, args.output_rows_multiples.split(",")),
            args.output_vocabularies.split(","),
        ):
            torch.manual_seed(0)
            model = Seq2Seq(Seq2SeqConfig(**{**sizes, **options})).to(args.device)
            if vocabulary == "targets":
                model.restrict_output(words.to(args.device))
            optimizer = build_optimizer(model.parameters(), "adam", 1e-3, 0.0)
            for batch in batches[: args.warmup]:
                train_step(model.train(), optimizer, batch, precision, args.device, rows)
            key = f"{name}/{precision}/rows={rows}/vocabulary={vocabulary}"
            runs[key] = (model, optimizer, precision, rows, [])
    for _ in range(args.rounds):
        for model, optimizer, precision, rows, times in runs.values():
            times += [
                train_step(model, optimizer, b, precision, args.device, rows) for b in batches
            ]
    training_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the profiler's
    config = next(iter(runs.values()))[0].config
    tokens = statistics.mean(b.num_tgt_tokens for b in batches)
    sentences = statistics.mean(len(b) for b in batches)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {  # once per dtype: every variant of a precision divides by the same peak
        precision: gemm_peak(config, batches[0], args.device, dtypes[precision])
        for precision in precisions(args.device)
    }
    results = {}
    for key, (model, optimizer, precision, rows, times) in runs.items():
        peak = peaks[precision]
        step = statistics.median(times)
        scored = model.output_words().numel()
        flops = statistics.mean(step_flops(model.config, b, scored) for b in batches)
        breakdown = {"gemm_time_share": None, "mfu_gemms_alone": None}
        if not model.config.fused_encoder:
            gemm, profiled = gemm_seconds(model, optimizer, batches, precision, args.device, rows)
            breakdown = {
                "gemm_time_share": round(gemm / profiled, 3),
                "mfu_gemms_alone": round(flops * len(batches) / gemm / peak, 3),
            }
        census = gemm_census(model, optimizer, batches, precision, args.device, rows)
        results[key] = {
            "median_step_s": round(step, 4),
            "target_tokens_per_s": round(tokens / step),
            "sentences_per_s": round(sentences / step, 1),
            "model_gflop_per_s": round(flops / step / 1e9, 2),
            "gemm_peak_gflop_per_s": round(peak / 1e9, 1),
            "mfu": round(flops / step / peak, 3),
            "output_rows_padding": round(output_rows_padding(batches, rows), 4),
            "output_words": scored,
            "analytic_gflop_per_step": round(flops / 1e9, 2),
            **breakdown,
            "gemm_census": census,
        }
    print(
        json.dumps(
            {
                "device": args.device,
                "architecture": sizes,
                "threads": args.threads,
                "keep_freed_memory": kept,
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "batches": len(batches),
                "mean_target_tokens_per_batch": round(tokens),
                "mean_sentences_per_batch": round(sentences, 1),
                "padding": batch_padding(batches),
                "peak_rss_mib": round(training_rss / 1024),
                "variants": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
