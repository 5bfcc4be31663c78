"""The GEMM peak of a device: TFLOP/s of large square matrix products in bf16 and in fp32
(TF32 off), measured here, the yardstick that model FLOPs utilization divides by. Prints JSON.

    python bench/gpu_peak.py [--device cuda] [--size 8192]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def peak_tflops(size: int, dtype: torch.dtype, device: str, repeats: int) -> float:
    """Mean TFLOP/s of `repeats` (size x size) @ (size x size) products after three warm-ups."""
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        left @ right
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        left @ right
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    report = {"device": name, "size": args.size}
    for label, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        report[f"{label}_tflops"] = float(
            f"{peak_tflops(args.size, dtype, args.device, args.repeats):.4g}"
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
