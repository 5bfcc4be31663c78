"""Decoding speed and quality on Multi30k test_2016_flickr (1,000 sentences) from a checkpoint.

Greedy and beam search across batch budgets (source tokens per batch, padding included), the
checkpoint's test search settings otherwise (its length penalty), in fp32 and, where the device
has fast bf16 (AMX / AVX-512 BF16, CUDA), under bf16 autocast: the same weights, so the BLEU of
the two is the cost of bf16 in search. With `--model DIR` (an export of the checkpoint) and
`--engines torch,onnxruntime`, the same searches also run in ONNX Runtime (fp32) with as many
threads, alternated with PyTorch's; with `--shortlist FILE` (seq2seq shortlist), PyTorch
searches with and without it, alternated, and the JSON says how many words a batch's output
layer computes and a sentence may use; with `--row-buckets 0,8`, every search runs with its rows
as they come and padded to the ladder (SearchOptions.row_buckets), alternated. `--census` adds,
from one more untimed pass of each PyTorch search, its distinct GEMM shapes, the hit rates of
shape-keyed caches (oneDNN's bf16 primitives, CUDA graphs) and its GEMM GFLOP (shape_census.py);
`--profile` what share of search time the GEMMs and the costliest ops take.
"Search" time is translation only: the checkpoint is loaded and the sentences are read before
the clock starts. Target tokens are subwords plus EOS, as in training. Prints one JSON object.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/decode_speed.py \
        --checkpoint runs/multi30k_de_en/checkpoints/last.ckpt [--checkpoint B.ckpt (ensemble)] \
        [--threads 2] [--precisions fp32] [--device cuda] \
        [--engines torch,onnxruntime --model EXPORT_DIR] [--shortlist FILE] [--row-buckets 0,8] \
        [--census] [--profile]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from sacrebleu.metrics import BLEU
from shape_census import GemmShapes, summary  # bench/: first on sys.path
from torch.nn.utils.rnn import pad_sequence
from torch.profiler import ProfilerActivity, profile

from seq2seq.allocator import keep_freed_memory
from seq2seq.data.corpus import read_lines
from seq2seq.decoding.search import SearchOptions
from seq2seq.model.autocast import has_fast_bf16
from seq2seq.shortlist import Shortlist
from seq2seq.translator import Translator

# as train_throughput.py's, which this script does not import: it loads Lightning
GEMM_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")


def measure(
    translator: Translator,
    sources: list[str],
    references: list[str],
    options: SearchOptions,
    batch_tokens: int,
) -> dict[str, float]:
    start = time.perf_counter()
    results = translator.translate_nbest(sources, options, batch_tokens)
    seconds = time.perf_counter() - start
    hypotheses = [best[0].text for best in results]
    words = shortlist_words(translator, sources, batch_tokens)
    target_tokens = sum(len(ids) + 1 for ids in translator.tokenizer.encode_tgt(hypotheses))
    return {
        "engine": translator.engine,
        "precision": translator.precision,
        "shortlist": translator.shortlist is not None,
        "output_words": translator.model.output_words().numel(),
        "beam": options.beam_size,
        "alpha": options.alpha,  # the checkpoint's length penalty
        "row_buckets": options.row_buckets,
        "batch_tokens": batch_tokens,
        "seconds": round(seconds, 2),
        "sentences_per_s": round(len(sources) / seconds, 1),
        "target_tokens_per_s": round(target_tokens / seconds),
        "bleu": round(BLEU().corpus_score(hypotheses, [references]).score, 2),
        **({"shortlist_words": words} if words else {}),
    }


def beam_search(translator: Translator, beam: int, row_buckets: int = 0) -> SearchOptions:
    """The checkpoint's test search (its length penalty and output bounds) with this beam (1:
    greedy) and row ladder, one hypothesis: what `seq2seq translate --beam-size N` runs."""
    return replace(
        translator.options, strategy="beam", beam_size=beam, nbest=1, row_buckets=row_buckets
    )


def census(
    translator: Translator, sources: list[str], options: SearchOptions, batch_tokens: int
) -> dict:
    """One more, untimed search under the GEMM census (shape_census.py): its GEMM calls and
    distinct shapes, the hit rates of least-recently-used caches of shapes that start empty,
    and its GEMM GFLOP (with a row ladder: what its padding costs)."""
    recorder = GemmShapes()
    with recorder:
        translator.translate_nbest(sources, options, batch_tokens)
    recorder.end_step()
    return {**summary(recorder, 0), "gemm_gflop": round(sum(recorder.flops) / 1e9, 1)}


def profiled(translator: Translator, sources: list[str], beam: int, batch_tokens: int) -> dict:
    """One search under torch.profiler: the shares of the ops' self CPU time that the GEMMs and
    the six costliest ops take."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        translator.translate_nbest(sources, beam_search(translator, beam), batch_tokens)
    events = sorted(profiler.key_averages(), key=lambda event: -event.self_cpu_time_total)
    total = sum(event.self_cpu_time_total for event in events)
    gemms = sum(event.self_cpu_time_total for event in events if event.key in GEMM_OPS)
    return {
        "precision": translator.precision,
        "shortlist": translator.shortlist is not None,
        "beam": beam,
        "batch_tokens": batch_tokens,
        "gemm_share": round(gemms / total, 3),
        "top_ops": {event.key: round(event.self_cpu_time_total / total, 3) for event in events[:6]},
    }


def shortlist_words(translator: Translator, sources: list[str], batch_tokens: int) -> dict | None:
    """With a shortlist: the words a batch's output layer computes and a sentence may use (of
    those the model scores), on average over the batches translate_nbest makes."""
    if translator.shortlist is None:
        return None
    ids = translator.encode(sources)
    scored = translator.model.output_words()
    batch, sentence = [], []
    for indices in translator.batches(ids, batch_tokens):
        src = pad_sequence([torch.tensor(ids[i]) for i in indices], batch_first=True)  # pad 0
        vocabulary = translator.shortlist.vocabulary(src).within(scored)
        batch.append(vocabulary.words.numel())
        sentence += (~vocabulary.outside).sum(dim=1).tolist()
    return {"batch": round(statistics.mean(batch)), "sentence": round(statistics.mean(sentence))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", required=True, action="append", help="given again: an ensemble of them"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beams", default="1,5", help="comma-separated beam sizes")
    parser.add_argument("--batch-tokens", default="1000,2000,4000", help="comma-separated budgets")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per setting; the median counts"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precisions",
        help="comma-separated: fp32, bf16 (default: bf16 too where the device has fast bf16)",
    )
    parser.add_argument(
        "--engines", default="torch", help="comma-separated: torch, onnxruntime (needs --model)"
    )
    parser.add_argument("--model", help="the checkpoint's export (seq2seq export), for onnxruntime")
    parser.add_argument(
        "--shortlist", help="a seq2seq shortlist file: torch searches with and without it"
    )
    parser.add_argument(
        "--row-buckets",
        default="0",
        help="comma-separated ladders of padded search rows (SearchOptions.row_buckets; 0: off),"
        " each alternated with the others",
    )
    parser.add_argument(
        "--census",
        action="store_true",
        help="then one more, untimed pass per PyTorch search under the GEMM census: its distinct"
        " GEMM shapes, the hit rates of shape-keyed caches, its GEMM GFLOP",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then one profiled pass per beam and translator at the last budget: what share of"
        " search time the GEMMs and the costliest ops take",
    )
    args = parser.parse_args()
    fast_bf16 = has_fast_bf16(torch.device(args.device))
    precisions = args.precisions or ("fp32,bf16" if fast_bf16 else "fp32")
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as train.py and the seq2seq command run
    directory = Path(os.environ["SEQ2SEQ_MULTI30K_DIR"])
    sources = list(read_lines(directory / "test_2016_flickr.de.gz"))
    references = list(read_lines(directory / "test_2016_flickr.en.gz"))
    engines = args.engines.split(",")
    row_buckets = [int(buckets) for buckets in args.row_buckets.split(",")]
    shortlists = [None] + ([Shortlist.load(args.shortlist)] if args.shortlist else [])
    translators = [
        Translator.from_checkpoints(args.checkpoint, args.device, precision, shortlist)
        for precision in precisions.split(",")
        for shortlist in shortlists
        if "torch" in engines
    ]
    if "onnxruntime" in engines:
        translators.append(Translator.from_export(args.model, "fp32", args.threads))
    for translator in translators:  # warm-up: allocator, thread pools, projection table
        translator.translate(sources[:50], beam_size=1)
    results, settings = [], []
    for beam in (int(b) for b in args.beams.split(",")):
        for budget in (int(t) for t in args.batch_tokens.split(",")):
            for translator, buckets in itertools.product(translators, row_buckets):
                options = beam_search(translator, beam, buckets)
                runs = [  # alternated: the machine's drift hits all alike
                    measure(translator, sources, references, options, budget)
                    for _ in range(args.repeats)
                ]
                median = statistics.median(run["seconds"] for run in runs)
                results.append(min(runs, key=lambda run: abs(run["seconds"] - median)))
                settings.append((translator, options, budget))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the profiler's
    for result, (translator, options, budget) in zip(results, settings, strict=True):
        if args.census and translator.engine == "torch":
            result["census"] = census(translator, sources, options, budget)
    last_budget = int(args.batch_tokens.split(",")[-1])
    profiles = [
        profiled(translator, sources, int(beam), last_budget)
        for beam in args.beams.split(",")
        for translator in (translators if args.profile else [])
    ]
    print(
        json.dumps(
            {
                "device": args.device,
                "threads": args.threads,
                "keep_freed_memory": kept,
                "sentences": len(sources),
                "peak_rss_mib": round(peak, 1),
                "results": results,
                **({"profiles": profiles} if profiles else {}),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
