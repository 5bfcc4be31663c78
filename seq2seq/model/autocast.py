"""bf16 autocast helpers: weights read at every step of a recurrence cast once per pass, and
whether a device has fast bf16 at all.

Autocast casts an fp32 operand of a GEMM to its low-precision dtype at every call, and caches
the cast only for leaf parameters, not for their slices or transposes: a recurrent weight used
as `weight_hh.transpose(1, 2)` at each of T steps would be cast T times per pass and its
gradient cast back T times. Casting once before the loop makes it one cast each way; the T
per-step gradients then add up in the low-precision dtype before the one cast back to fp32.
"""

from __future__ import annotations

from pathlib import Path

import torch


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast gives GEMMs on `device_type` ('cpu', 'cuda') now, or None when off."""
    if hasattr(torch, "get_autocast_dtype"):  # torch 2.4+
        enabled = torch.is_autocast_enabled(device_type)
        return torch.get_autocast_dtype(device_type) if enabled else None
    if device_type == "cpu":  # torch 2.2, 2.3
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


def cast_once(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` in autocast's GEMM dtype when autocast is on for its device, else unchanged."""
    dtype = autocast_dtype(tensor.device.type)
    return tensor if dtype is None or not tensor.is_floating_point() else tensor.to(dtype)


def has_fast_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 GEMMs faster than fp32: a CUDA GPU from Ampere on (compute
    capability 8.0), or a CPU with AVX-512 BF16 or AMX. Elsewhere bf16 is emulated, many times
    slower than fp32 (torch.cuda.is_bf16_supported() is True for emulated bf16 too)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type != "cpu":
        return False
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags
