"""The GEMM shapes a piece of work runs, and how often a shape-keyed cache would find them.

oneDNN's bf16 GEMMs on the CPU build a primitive per new GEMM shape (milliseconds each) and keep
the last ONEDNN_PRIMITIVE_CACHE_CAPACITY of them (64, seq2seq/__init__.py); CUDA graphs need
shapes that recur too. `GemmShapes` records every GEMM call (aten mm, addmm, bmm, baddbmm:
operand shapes, strides and dtype, the key a primitive cache is looked up by) and its FLOPs;
`hit_rate` replays the keys through a least-recently-used cache. Shared by gemm_shapes.py and
decode_speed.py; it imports neither Lightning nor the package.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch.utils._python_dispatch import TorchDispatchMode

GEMMS = (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm)
CAPACITIES = (64, 256, 1024)


class GemmShapes(TorchDispatchMode):
    """Records the cache key of every GEMM run inside the `with` block, backward included."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[tuple] = []
        self.flops: list[int] = []  # of each GEMM call: 2 x its multiply-adds
        self.step_ends: list[int] = []  # len(keys) after each training step or search pass

    def end_step(self) -> None:
        """Mark the end of a training step (or of a search's pass over the test set)."""
        self.step_ends.append(len(self.keys))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in GEMMS:
            operands = tuple(
                (tuple(a.shape), a.stride(), a.dtype) for a in args if isinstance(a, torch.Tensor)
            )
            self.keys.append((func.overloadpacket.__name__, operands))
            product = func(*args, **(kwargs or {}))
            inner = [a for a in args if isinstance(a, torch.Tensor)][-2].shape[-1]  # K
            self.flops.append(2 * product.numel() * inner)
            return product
        return func(*args, **(kwargs or {}))


def hit_rate(keys: list[tuple], capacity: int, counted_from: int) -> float:
    """Share of `keys[counted_from:]` found in a least-recently-used cache of `capacity` keys
    that has seen every key before it."""
    cache: OrderedDict[tuple, None] = OrderedDict()
    hits = 0
    for position, key in enumerate(keys):
        if key in cache:
            cache.move_to_end(key)
            hits += position >= counted_from
        else:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits / max(1, len(keys) - counted_from)


def summary(recorder: GemmShapes, counted_from: int) -> dict:
    """Calls and distinct shapes (in all, and per step on average) and the cache hit rates of
    the calls from `counted_from` on."""
    keys, ends = recorder.keys, recorder.step_ends
    per_step = [len(set(keys[start:end])) for start, end in zip([0, *ends], ends, strict=False)]
    return {
        "gemm_calls": len(keys) - counted_from,
        "distinct_shapes": len(set(keys)),
        "distinct_shapes_per_step": round(sum(per_step) / len(per_step), 1),
        "hit_rate": {str(c): round(hit_rate(keys, c, counted_from), 4) for c in CAPACITIES},
    }
