"""Training memory against corpus size: the reference model trained by train.py on Multi30k and
on a large corpus (bench/make_corpus.py's; both caches prepared first), each in its own
process, its resident memory read from /proc every half second and matched to the update the
progress bar shows. Validation is off in both (Multi30k would validate every 209 updates, the
large corpus not within the run), so the two processes do the same work apart from the data.
Prints JSON: RSS at each of --at updates and the peak, per corpus.

    SEQ2SEQ_MULTI30K_DIR=../shared/data/multi30k python bench/train_memory.py \
        --large /tmp/large/train [--large /tmp/large/single] --data-dir /tmp/large/data \
        [--at 50,200,2000]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

PROGRESS = re.compile(r"Epoch (\d+):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")  # tqdm's bar


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of process `pid` now: in all, anonymous (the process's own) and file
    pages mapped (the memory-mapped cache's pages read so far, which the kernel can drop)."""
    fields = {"VmRSS:": "rss", "RssAnon:": "anonymous", "RssFile:": "file"}
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name = line.split(":")[0] + ":"
        if name in fields:
            found[fields[name]] = round(int(line.split()[1]) / 1024, 1)
    return found


def watch(command: list[str], marks: list[int]) -> dict[str, object]:
    """Run `command`; RSS when the progress bar first shows each update count in `marks`."""
    # Lightning's progress bar writes to stdout; errors go along
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    progress = {"update": 0}

    def read_progress() -> None:
        pending = b""
        while chunk := process.stdout.read1(4096):
            pending = (pending + chunk)[-4096:]
            found = PROGRESS.findall(pending.decode(errors="replace"))
            if found:
                epoch, batch, total = (int(x) for x in found[-1])
                progress["update"] = epoch * total + batch

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    at, peak = {}, 0.0
    while process.poll() is None:
        try:
            now = rss_mib(process.pid)
        except FileNotFoundError:
            break
        peak = max(peak, now.get("rss", 0.0))
        for mark in marks:
            if mark not in at and progress["update"] >= mark:
                at[mark] = now
        time.sleep(0.5)
    reader.join(timeout=5)
    if process.wait() != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return {"rss_mib_at_update": at, "peak_rss_mib": round(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--large",
        required=True,
        action="append",
        help="PREFIX of a large corpus's .gz files (again: another corpus)",
    )
    parser.add_argument(
        "--data-dir", required=True, help="their caches go under it, one directory a corpus"
    )
    parser.add_argument("--at", default="50,200", help="comma-separated update counts")
    args = parser.parse_args()
    marks = [int(mark) for mark in args.at.split(",")]
    base = [sys.executable, "train.py", "fit", "--config", "configs/multi30k_de_en.yaml"]
    run = [
        f"--trainer.max_steps={max(marks) + 5}",
        "--trainer.limit_val_batches=0",
        "--trainer.default_root_dir=/tmp/train_memory",
        "--test_after_fit=false",
    ]
    corpora = {"multi30k": []}
    for prefix in args.large:
        corpora[prefix] = [
            "--data.corpus=seq2seq.data.corpus.Files",
            f"--data.corpus.train=[{prefix}]",
            f"--data.data_dir={Path(args.data_dir) / Path(prefix).name}",
        ]
    prepare = [sys.executable, "-m", "seq2seq.cli", "prepare", *base[3:]]
    for data in corpora.values():  # caches ready first: the runs measure training alone
        subprocess.run([*prepare, *data], check=True, stdout=subprocess.DEVNULL)
    report = {name: watch([*base, *data, *run], marks) for name, data in corpora.items()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
