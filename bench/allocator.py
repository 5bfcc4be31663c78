"""What keeping freed memory (seq2seq/allocator.py) buys: glibc's steady state against the
kept heap, alternated within one process, for reference training steps and for search.

Training: the reference model (fp32, and bf16 autocast where the CPU has fast bf16) runs the
same real Multi30k batches under each setting in alternating rounds. Search (with
`--checkpoint`): every chunk of 100 test_2016 sentences is translated under each setting in
turn, the order swapped from chunk to chunk. This machine's speed drifts by tens of percent
within minutes, so only settings measured side by side like this compare. Prints one JSON
object.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/allocator.py \
        [--checkpoint CKPT] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import torch
from train_throughput import precisions, train_step, training_batches

from seq2seq.allocator import keep_freed_memory
from seq2seq.data.corpus import read_lines
from seq2seq.decoding.search import SearchOptions
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig
from seq2seq.schedules import build_optimizer
from seq2seq.translator import Translator

SETTINGS = {"glibc": False, "kept": True}


def training(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    batches = training_batches(args.steps, args.max_tokens, args.data_dir, "cpu")
    results = {}
    for precision in precisions("cpu"):
        torch.manual_seed(0)
        model = Seq2Seq(Seq2SeqConfig(share_embeddings=True)).train()
        optimizer = build_optimizer(model.parameters(), "adam", 1e-3, 0.0)
        for batch in batches[: args.warmup]:
            train_step(model, optimizer, batch, precision, "cpu")
        times: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for round_ in range(args.rounds):
            for name in _order(round_):
                keep_freed_memory(SETTINGS[name])
                times[name] += [train_step(model, optimizer, b, precision, "cpu") for b in batches]
        medians = {name: statistics.median(values) for name, values in times.items()}
        results[f"step_s/{precision}"] = {k: round(v, 4) for k, v in medians.items()}
        results[f"step_s/{precision}"]["speed-up"] = round(medians["glibc"] / medians["kept"], 3)
    return results


def searching(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    translator = Translator.from_checkpoint(args.checkpoint)
    sources = list(read_lines(Path(os.environ["SEQ2SEQ_MULTI30K_DIR"]) / "test_2016_flickr.de.gz"))
    chunks = [sources[i : i + args.chunk] for i in range(0, len(sources), args.chunk)]
    results = {}
    for beam in (1, 5):
        options = SearchOptions(beam_size=beam)
        seconds = dict.fromkeys(SETTINGS, 0.0)
        for round_ in range(args.rounds):
            for index, chunk in enumerate(chunks):
                for name in _order(round_ + index):
                    keep_freed_memory(SETTINGS[name])
                    start = time.perf_counter()
                    translator.translate_nbest(chunk, options, args.batch_tokens)
                    seconds[name] += time.perf_counter() - start
        rate = {name: len(sources) * args.rounds / s for name, s in seconds.items()}
        results[f"sentences_per_s/beam{beam}"] = {k: round(v, 1) for k, v in rate.items()}
        results[f"sentences_per_s/beam{beam}"]["speed-up"] = round(rate["kept"] / rate["glibc"], 3)
    return results


def _order(turn: int) -> list[str]:
    names = list(SETTINGS)
    return names if turn % 2 == 0 else names[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", help="also compare search on test_2016 with this model")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="training batches per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=2400, help="batch budget (reference)")
    parser.add_argument("--batch-tokens", type=int, default=2000, help="search batch budget")
    parser.add_argument("--chunk", type=int, default=100, help="sentences searched per turn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not keep_freed_memory(False):
        parser.error("this C library is not glibc: there is nothing to compare")
    results = training(args)
    if args.checkpoint:
        results.update(searching(args))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps({"threads": args.threads, "peak_rss_mib": round(peak, 1), **results}, indent=2)
    )


if __name__ == "__main__":
    main()
