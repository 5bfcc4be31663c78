"""A large synthetic parallel corpus from Multi30k's training pairs, every pair distinct.

Pair i joins 2-4 training pairs drawn at random (the same ones on both sides, in the same
order), so lengths vary like running text (about 25-60 subwords), and starts with its number on
both sides ("17. ..."), so no two pairs are equal and no cache or deduplication can shortcut
them. Written streaming, gzipped, as PREFIX.de.gz and PREFIX.en.gz; memory stays that of
Multi30k's 29,000 pairs whatever N. `--groups 1-8 --unnumbered` makes a training corpus of
long pairs (all but 1 in 100,000 within 200 subwords).

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/make_corpus.py \
        --output /tmp/large/train [--pairs 3000000] [--seed 0] [--groups 2-4] [--unnumbered]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import time
from pathlib import Path

from seq2seq.data.corpus import read_lines


def write_distinct(
    prefix: Path,
    pairs: int,
    seed: int = 0,
    group_sizes: tuple[int, ...] = (2, 3, 4),
    numbered: bool = True,
) -> dict[str, object]:
    """Write `pairs` joined pairs (each of `group_sizes` training pairs, numbered: distinct) to
    prefix.{de,en}.gz; what was written."""
    source = Path(os.environ["SEQ2SEQ_MULTI30K_DIR"])
    german = list(read_lines(source / "train.de.gz"))
    english = list(read_lines(source / "train.en.gz"))
    generator = random.Random(seed)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{prefix}.{lang}.gz") for lang in ("de", "en")]
    joined = 0
    with (
        gzip.open(paths[0], "wt", compresslevel=1) as de,
        gzip.open(paths[1], "wt", compresslevel=1) as en,
    ):
        for number in range(1, pairs + 1):
            rows = generator.sample(range(len(german)), generator.choice(group_sizes))
            joined += len(rows)
            label = f"{number}. " if numbered else ""
            de.write(label + " ".join(german[row] for row in rows) + "\n")
            en.write(label + " ".join(english[row] for row in rows) + "\n")
    return {
        "pairs": pairs,
        "multi30k_pairs_per_pair": round(joined / max(pairs, 1), 2),
        "files": [str(path) for path in paths],
        "gzipped_mib": round(sum(path.stat().st_size for path in paths) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, required=True, help="PREFIX of the .gz files")
    parser.add_argument("--pairs", type=int, default=3_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--groups", default="2-4", help="MIN-MAX training pairs a pair joins")
    parser.add_argument("--unnumbered", action="store_true", help="no number before each pair")
    args = parser.parse_args()
    smallest, largest = (int(size) for size in args.groups.split("-"))
    started = time.perf_counter()
    sizes = tuple(range(smallest, largest + 1))
    report = write_distinct(args.output, args.pairs, args.seed, sizes, not args.unnumbered)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
