"""Data preparation throughput and peak memory: Multi30k, and Multi30k repeated to 3M pairs.

Each measurement runs in a fresh child process (so its peak RSS is its own) on a fresh working
directory: tokenizer training plus encoding of every split, then a second, cached start.
Prints one JSON object. Usage:

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/prepare_data.py [--pairs 3000000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB. (Encoding workers hold one 4,096-pair chunk
    each; their ru_maxrss would only echo the parent's pages at fork time, so it is not shown.)"""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(corpus: str, pairs: int, workdir: Path) -> dict[str, object]:
    """Runs inside the child: prepare twice (cold, then cached) and report."""
    from seq2seq.data.corpus import Files
    from seq2seq.data.multi30k import Multi30k
    from seq2seq.datamodule import TranslationDataModule

    source = Multi30k() if corpus == "multi30k" else Files([write_repeated(workdir, pairs)])
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
    }


def write_repeated(workdir: Path, pairs: int) -> str:
    """Multi30k's training pairs repeated until `pairs` lines, as `synthetic.{de,en}.gz`."""
    source = Path(os.environ["SEQ2SEQ_MULTI30K_DIR"])
    for lang in ("de", "en"):
        lines = gzip.decompress((source / f"train.{lang}.gz").read_bytes()).splitlines(
            keepends=True
        )
        with gzip.open(workdir / f"synthetic.{lang}.gz", "wb", compresslevel=1) as out:
            for start in range(0, pairs, len(lines)):
                out.writelines(lines[: pairs - start])
    return str(workdir / "synthetic")


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
