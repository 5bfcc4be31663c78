"""Is the data loader ever the bottleneck? Training batches/s from the prepared cache, for
Multi30k and for a large corpus of distinct pairs (bench/make_corpus.py), against the batches/s
a training step consumes.

The reference data settings (2,400-token batches, length-bucketed, shuffled; the DataLoader in
the training process, as the configs run it). After preparing (not timed), it times the first
`--batches` batches of an epoch, the sampler's epoch plan included, and reports batches/s,
target tokens/s, the peak RSS of this process (preparation included) and the ratio to
`1 / --step-seconds` (the reference training step on 2 CPU cores: docs/performance.md).
Prints one JSON object.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/loader_speed.py \
        [--pairs 3000000] [--batches 500] [--step-seconds 0.96]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from make_corpus import write_distinct  # bench/ is this script's directory, first on sys.path

from seq2seq.data.corpus import Files
from seq2seq.data.multi30k import Multi30k
from seq2seq.datamodule import TranslationDataModule


def measure(name: str, datamodule: TranslationDataModule, batches: int, step_seconds: float):
    datamodule.prepare_data()
    datamodule.setup("fit")
    started = time.perf_counter()
    loader = iter(datamodule.train_dataloader())
    tokens = count = 0
    for batch in loader:
        tokens += int((batch.tgt_out != 0).sum())
        count += 1
        if count == batches:
            break
    seconds = time.perf_counter() - started
    return {
        "corpus": name,
        "training_pairs": datamodule.statistics()["splits"]["train"]["pairs"],
        "batches": count,
        "batches_per_s": round(count / seconds, 1),
        "target_tokens_per_s": round(tokens / seconds),
        "times_step_consumption": round(count / seconds * step_seconds, 1),
        "peak_rss_mib_preparation_included": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3_000_000)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--step-seconds", type=float, default=0.96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        write_distinct(work / "large", args.pairs)
        results = [
            measure(
                "multi30k",
                TranslationDataModule(corpus=Multi30k(), data_dir=str(work / "m30k")),
                args.batches,
                args.step_seconds,
            ),
            measure(
                f"{args.pairs} distinct pairs",
                TranslationDataModule(
                    corpus=Files([str(work / "large")]), data_dir=str(work / "large_data")
                ),
                args.batches,
                args.step_seconds,
            ),
        ]
    print(json.dumps({"step_seconds": args.step_seconds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
