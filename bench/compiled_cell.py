"""Does torch.compile pay for the layer-normalized LSTM step? Eager vs compiled, same process.

Times forward + backward of `RecurrentCell.step` (recurrent GEMM, two layer norms, gates,
variational recurrent-dropout mask) at the reference model's encoder and decoder shapes,
alternating the two variants; reports compile time, the largest output difference and the
best-of-rounds step time. Prints one JSON object.

    python bench/compiled_cell.py [--threads 2] [--rounds 5] [--steps 50] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from seq2seq.model.cells import LSTMCell

SHAPES = {"encoder": (2, 124, 256), "decoder": (1, 124, 512)}  # directions, batch, hidden


def step_inputs(directions: int, batch: int, hidden: int, device: str) -> list[torch.Tensor]:
    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, requires_grad=True)

    input_gates = leaf(directions, batch, 4 * hidden)
    state, cell = leaf(directions, batch, hidden), leaf(directions, batch, hidden)
    mask = torch.bernoulli(torch.full((directions, batch, hidden), 0.9, device=device)) / 0.9
    return [input_gates, state, cell, mask]


def forward_backward(step, inputs: list[torch.Tensor]) -> None:
    hidden, cell = step(*inputs)
    (hidden.sum() + cell.sum()).backward()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(name: str, shape: tuple[int, int, int], rounds: int, steps: int, device: str) -> dict:
    cell = LSTMCell(shape[2], shape[2], shape[0], layer_norm=True).to(device)
    inputs = step_inputs(*shape, device)
    compiled = torch.compile(cell.step, dynamic=True)
    start = time.perf_counter()
    forward_backward(compiled, inputs)
    synchronize(device)
    compile_seconds = time.perf_counter() - start
    difference = max(
        (eager - fast).abs().max().item()
        for eager, fast in zip(cell.step(*inputs), compiled(*inputs), strict=True)
    )
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(rounds):
        for variant, step in (("eager", cell.step), ("compiled", compiled)):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                forward_backward(step, inputs)
            synchronize(device)
            times[variant].append((time.perf_counter() - start) / steps * 1e3)
    return {
        "shape": name,
        "directions_batch_hidden": shape,
        "compile_s": round(compile_seconds, 1),
        "max_abs_difference": difference,
        "eager_ms": round(min(times["eager"]), 3),
        "compiled_ms": round(min(times["compiled"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [
        measure(name, shape, args.rounds, args.steps, args.device) for name, shape in SHAPES.items()
    ]
    print(
        json.dumps({"device": args.device, "threads": args.threads, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
