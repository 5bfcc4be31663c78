"""Long sentences: what training steps and search cost as sentences grow, and what long inputs
cost a model's quality. Prints one JSON object.

- `train`: the reference architecture (fp32, layer norm, variational dropout, train mode), one
  token budget (2,400 tokens a batch, padding included: 2400 // (L + 1) sentences) at source and
  target lengths L = 25, 50, 100, 150 subwords of random ids; median step time (forward, loss,
  backward, clipping, Adam), target tokens/s, and the peak RSS of a process that ran only that
  length.
- `decode` (needs --checkpoint): test_2016_flickr joined in groups of k consecutive pairs (k = 1,
  3, 5, 8; the German and the English of a group joined by spaces): source subwords, greedy and
  beam-5 speed, the peak RSS of a process that decoded only that k, BLEU of the joined
  translations, and BLEU of the group's sentences translated one by one and joined afterwards
  (what reading the long input costs the model). Then 20 inputs of 250 subwords (the longest
  that translate reads): they must translate.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/long_sentences.py \
        [--parts train,decode] --checkpoint runs/multi30k_de_en/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sacrebleu.metrics import BLEU
from train_throughput import architecture, train_step

from seq2seq.data.batch import collate
from seq2seq.data.corpus import read_lines
from seq2seq.decoding.search import SearchOptions
from seq2seq.model.seq2seq import Seq2Seq, Seq2SeqConfig
from seq2seq.schedules import build_optimizer
from seq2seq.translator import MAX_SOURCE_TOKENS, Translator

LENGTHS = (25, 50, 100, 150)
GROUPS = (1, 3, 5, 8)
BUDGET = 2400


def peak_rss_mib() -> float:
    """This process's peak resident memory."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def train_length(length: int, steps: int) -> dict[str, object]:
    """Step time and peak RSS at one length, in this process."""
    config = Seq2SeqConfig(**architecture(["configs/multi30k_de_en.yaml"]))
    model = Seq2Seq(config).train()
    optimizer = build_optimizer(model.parameters(), "adam", 3e-3, 0.0)
    sentences = BUDGET // (length + 1)
    generator = np.random.default_rng(0)
    items = [
        (generator.integers(4, 8000, length), generator.integers(4, 8000, length), i)
        for i in range(sentences)
    ]
    batch = collate(items)
    times = [train_step(model, optimizer, batch, "fp32", "cpu") for _ in range(steps + 2)][2:]
    median = statistics.median(times)
    return {
        "length": length,
        "sentences": sentences,
        "step_s": round(median, 3),
        "target_tokens_per_s": round(sentences * (length + 1) / median),
        "peak_rss_mib": peak_rss_mib(),
    }


def joined(lines: list[str], size: int) -> list[str]:
    """Consecutive lines joined in groups of `size` (the last group may be shorter)."""
    return [" ".join(lines[start : start + size]) for start in range(0, len(lines), size)]


def decode_groups(checkpoint: str, size: int) -> dict[str, object]:
    """Speed, peak RSS and BLEU of test_2016 joined in groups of `size`, in this process."""
    directory = Path(os.environ["SEQ2SEQ_MULTI30K_DIR"])
    german = list(read_lines(directory / "test_2016_flickr.de.gz"))
    english = list(read_lines(directory / "test_2016_flickr.en.gz"))
    translator = Translator.from_checkpoint(checkpoint, precision="fp32")
    sources, references = joined(german, size), joined(english, size)
    lengths = [len(ids) for ids in translator.encode(sources)]
    report = {
        "group": size,
        "inputs": len(sources),
        "source_subwords_mean": round(float(np.mean(lengths)), 1),
        "source_subwords_max": max(lengths),
    }
    for beam in (1, 5):
        start = time.perf_counter()
        hypotheses = translator.translate(sources, beam_size=beam)
        seconds = time.perf_counter() - start
        tokens = sum(len(ids) + 1 for ids in translator.tokenizer.encode_tgt(hypotheses))
        alone = translator.translate(german, beam_size=beam)
        report[f"beam{beam}"] = {
            "seconds": round(seconds, 2),
            "target_tokens_per_s": round(tokens / seconds),
            "bleu_joined_input": round(BLEU().corpus_score(hypotheses, [references]).score, 2),
            "bleu_sentences_joined_after": round(
                BLEU().corpus_score(joined(alone, size), [references]).score, 2
            ),
        }
    report["peak_rss_mib"] = peak_rss_mib()
    return report


def longest_inputs(checkpoint: str) -> dict[str, object]:
    """20 inputs cut at MAX_SOURCE_TOKENS subwords, greedy and beam 5."""
    directory = Path(os.environ["SEQ2SEQ_MULTI30K_DIR"])
    german = list(read_lines(directory / "test_2016_flickr.de.gz"))
    translator = Translator.from_checkpoint(checkpoint, precision="fp32")
    sources = joined(german, 25)[:20]  # 25 captions: more than 250 subwords each
    lengths = [min(len(ids), MAX_SOURCE_TOKENS) for ids in translator.encode(sources)]
    report = {"inputs": len(sources), "source_subwords_min": min(lengths)}
    for beam in (1, 5):
        start = time.perf_counter()
        results = translator.translate_nbest(sources, SearchOptions(beam_size=beam))
        output = [len(best[0].tokens) for best in results]
        report[f"beam{beam}"] = {
            "seconds": round(time.perf_counter() - start, 2),
            "output_subwords_mean": round(float(np.mean(output)), 1),
            "output_subwords_max": max(output),
        }
    report["peak_rss_mib"] = peak_rss_mib()
    return report


def in_child(*arguments: str) -> dict[str, object]:
    """This script run again with `arguments`, in a fresh process: its JSON."""
    command = [sys.executable, __file__, *arguments]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="train,decode")
    parser.add_argument("--checkpoint", help="a reference-config checkpoint, for decode")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps a length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help="internal: one measurement in this process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        kind, value = args.one.split("=")
        if kind == "length":
            result = train_length(int(value), args.steps)
        elif kind == "group":
            result = decode_groups(args.checkpoint, int(value))
        else:
            result = longest_inputs(args.checkpoint)
        print(json.dumps(result))
        return
    common = ["--steps", str(args.steps), "--threads", str(args.threads)]
    if args.checkpoint:
        common += ["--checkpoint", args.checkpoint]
    report: dict[str, object] = {"threads": args.threads}
    if "train" in args.parts:
        report["train"] = [in_child("--one", f"length={n}", *common) for n in LENGTHS]
    if "decode" in args.parts:
        report["decode"] = [in_child("--one", f"group={k}", *common) for k in GROUPS]
        report["longest_inputs"] = in_child("--one", "longest=250", *common)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
