"""A large synthetic parallel corpus from Multi30k's training pairs, every pair distinct.

Pair i joins 2-4 training pairs drawn at random (the same ones on both sides, in the same
order), so lengths vary like running text (about 25-60 subwords), and starts with its number on
both sides ("17. ..."), so no two pairs are equal and no cache or deduplication can shortcut
them. Written streaming, gzipped, as PREFIX.de.gz and PREFIX.en.gz; memory stays that of
Multi30k's 29,000 pairs whatever N.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/make_corpus.py \
        --output /tmp/large/train [--pairs 3000000] [--seed 0]
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

GROUP_SIZES = (2, 3, 4)


def write_distinct(prefix: Path, pairs: int, seed: int = 0) -> dict[str, object]:
    """Write `pairs` distinct joined pairs to prefix.{de,en}.gz; what was written."""
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
            rows = generator.sample(range(len(german)), generator.choice(GROUP_SIZES))
            joined += len(rows)
            de.write(f"{number}. " + " ".join(german[row] for row in rows) + "\n")
            en.write(f"{number}. " + " ".join(english[row] for row in rows) + "\n")
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
    args = parser.parse_args()
    started = time.perf_counter()
    report = write_distinct(args.output, args.pairs, args.seed)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
