"""Data preparation throughput, peak memory and cache size: Multi30k, and 3M distinct pairs made
from it by bench/make_corpus.py (2-4 training pairs joined, numbered).

Each measurement runs in a fresh child process (so its peak RSS is its own) on a fresh working
directory: tokenizer training plus encoding of every split, then a second, cached start.
Prints one JSON object. Usage:

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/prepare_data.py [--pairs 3000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from make_corpus import write_distinct  # bench/ is this script's directory, first on sys.path


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB. (Encoding workers hold one 4,096-pair chunk
    each; their ru_maxrss would only echo the parent's pages at fork time, so it is not shown.)"""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(corpus: str, pairs: int, workdir: Path) -> dict[str, object]:
    """Runs inside the child: prepare twice (cold, then cached) and report."""
    from seq2seq.data.corpus import Files
    from seq2seq.data.multi30k import Multi30k
    from seq2seq.datamodule import TranslationDataModule

    if corpus == "multi30k":
        source = Multi30k()
    else:
        write_distinct(workdir / "synthetic", pairs)
        source = Files([str(workdir / "synthetic")])
    datamodule = TranslationDataModule(corpus=source, data_dir=str(workdir / "work"))
    start = time.perf_counter()
    datamodule.prepare_data()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    datamodule.prepare_data()
    datamodule.setup()
    cached = time.perf_counter() - start
    statistics = datamodule.statistics()
    total_pairs = sum(split["pairs"] for split in statistics["splits"].values())
    return {
        "corpus": corpus,
        "pairs": total_pairs,
        "cold_seconds": round(cold, 2),
        "pairs_per_second": round(total_pairs / cold),
        "cached_start_seconds": round(cached, 2),
        "peak_rss_mib": peak_rss_mib(),
        "cache_mib": round(directory_bytes(workdir / "work") / 2**20, 1),
    }


def directory_bytes(directory: Path) -> int:
    """Bytes of the files under `directory`: the tokenizer and the encoded cache."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def run_child(corpus: str, pairs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as workdir:
        command = [
            sys.executable,
            __file__,
            "--child",
            corpus,
            "--pairs",
            str(pairs),
            "--workdir",
            workdir,
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3_000_000, help="size of the synthetic corpus")
    parser.add_argument("--child", choices=["multi30k", "synthetic"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if "SEQ2SEQ_MULTI30K_DIR" not in os.environ:
        sys.exit("prepare_data.py: set SEQ2SEQ_MULTI30K_DIR to a local Multi30k copy")
    if args.child:
        print(json.dumps(measure(args.child, args.pairs, args.workdir)))
        return
    results = [run_child("multi30k", 0), run_child("synthetic", args.pairs)]
    print(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
