"""Keep freed memory in the process instead of handing it back to the kernel at every step.

glibc's malloc serves blocks over its mmap threshold (at most 32 MiB) with fresh mmaps and
unmaps them on free. A training step allocates several (N, V) tensors around the output layer
(logits, log-probabilities, their gradients: tens of MB each at the reference batch), so every
step maps them anew and pays a page fault per 4 KiB page before any arithmetic; decoding does the
same with its (B*K, V) log-probabilities. Serving every block from the heap and never trimming
it lets the next step reuse the same pages, for somewhat more peak memory (bench/allocator.py
measures both; docs/performance.md has the figures).

The setting is process-wide, so the entry points (train.py, the `seq2seq` command, the
benchmarks) apply it, never `import seq2seq`; SEQ2SEQ_KEEP_FREED_MEMORY=0 leaves malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # bytes free at the heap's top before it is given back (int max)
# glibc's steady state, to restore: mmap for at most 65,536 blocks, and a threshold that grows
# with every freed mmapped block up to 32 MiB (trimming at twice that)
_GLIBC_MMAP_MAX = 65536
_GLIBC_THRESHOLD = 32 * 1024 * 1024


def keep_freed_memory(enabled: bool | None = None) -> bool:
    """Serve all allocations from the heap and never trim it (`enabled`, by default unless
    SEQ2SEQ_KEEP_FREED_MEMORY=0), or go back to glibc's steady state (False: mmap over 32 MiB,
    the most its dynamic threshold reaches; for comparisons). Returns whether malloc was
    changed: False on a C library other than glibc, where nothing is done."""
    if enabled is None:
        enabled = os.environ.get("SEQ2SEQ_KEEP_FREED_MEMORY", "1") != "0"
        if not enabled:
            return False
    libc = _glibc()
    if libc is None:
        return False
    if enabled:
        settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
    else:
        settings = (
            (_M_MMAP_MAX, _GLIBC_MMAP_MAX),
            (_M_MMAP_THRESHOLD, _GLIBC_THRESHOLD),
            (_M_TRIM_THRESHOLD, 2 * _GLIBC_THRESHOLD),
        )
    changed = all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
    if not enabled:
        libc.malloc_trim(0)
    return changed


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    return libc
