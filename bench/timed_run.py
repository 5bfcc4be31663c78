"""A train.py run in this process, then its cost: wall seconds and, on a GPU, the peak GPU memory
PyTorch allocated and reserved. Takes train.py's arguments; prints one JSON line last.

    python bench/timed_run.py fit --config configs/multi30k_de_en.yaml \
        --trainer.accelerator gpu --trainer.precision bf16-mixed --trainer.max_time 00:00:03:00
"""

from __future__ import annotations

import json
import sys
import time

import torch

from seq2seq.lightning_cli import main as train


def main() -> None:
    started = time.perf_counter()
    train(sys.argv[1:])
    report = {"wall_seconds": round(time.perf_counter() - started, 1)}
    if torch.cuda.is_available():
        report["peak_gpu_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        report["peak_gpu_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
