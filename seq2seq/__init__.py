"""seq2seq: recurrent neural machine translation on PyTorch Lightning."""

import os

__version__ = "0.1.0"

# bf16 GEMMs on CPU run through oneDNN, which keeps a compiled primitive per GEMM shape (1,024
# by default, also in torch's ideep layer). Batches of varying shapes fill both caches and memory
# grows for a whole run; at 64 entries a bf16 training run's memory stays flat and no slower
# (docs/performance.md). A reference training step uses 36 GEMM shapes and about 950 recur over
# Multi30k's batches (bench/gemm_shapes.py): 64 entries hit 91% of GEMM calls, 1,024 all of them
# from the second epoch on, yet on a CPU with AVX-512 BF16 1,024 made bf16 training and search
# no faster and raised their peak memory 1.7-2x (docs/performance.md). Read when oneDNN is
# first used, so this works after `import torch`; a user's setting wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
os.environ.setdefault("LRU_CACHE_CAPACITY", "64")
