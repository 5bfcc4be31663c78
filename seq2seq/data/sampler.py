"""Length-bucketed batches bounded by a token budget, reshuffled per epoch, split across ranks.

A batch's cost counts padding: batch size x its longest sequence (BOS or EOS included, on the
longer side). Sorting by length before cutting keeps that padding small; shuffling inside equal
lengths and shuffling the order of batches keeps epochs different. Every rank builds the same
batches from the same seed and takes every `num_replicas`-th one, so the ranks' batches are
disjoint; in training each rank gets exactly as many batches as the others (the few batches
past the last multiple of `num_replicas` wait for a later epoch), because a rank that runs out
early would leave the others hanging in DDP's gradient all-reduce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from torch.utils.data import Sampler


class TokenBatchSampler(Sampler[list[int]]):
    """Yields lists of pair indices whose padded cost stays within `max_tokens`.

    Args:
        src_lengths: (N,) source lengths in tokens, without BOS/EOS.
        tgt_lengths: (N,) target lengths in tokens, without BOS/EOS.
        max_tokens: budget per batch, padding included; a single pair longer than the budget
            (possible only in unfiltered evaluation data) is a batch of its own.
        shuffle: reshuffle every epoch (training) or keep one length-sorted order (evaluation).
        seed: base of the per-epoch random generator; the same seed gives the same epochs.
        num_replicas: number of ranks sharing the data.
        rank: this process's rank, 0 <= rank < num_replicas.
        equal_per_rank: give every rank the same number of batches (training under DDP).
        resume_offset: called at the start of every pass; how many of this epoch's batches were
            already trained on (a run resumed mid-epoch), to be skipped.
    """

    def __init__(
        self,
        src_lengths: np.ndarray,
        tgt_lengths: np.ndarray,
        max_tokens: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        equal_per_rank: bool = True,
        resume_offset: Callable[[], int] | None = None,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        # 4 bytes a pair, and 4 for an epoch's order: what millions of pairs cost in memory
        self.costs = (np.maximum(src_lengths, tgt_lengths) + 1).astype(np.int32)  # (N,)
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.equal_per_rank = equal_per_rank
        self.resume_offset = resume_offset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.equal_per_rank:
            batches = batches[: len(batches) - len(batches) % self.num_replicas]
        skip = self.resume_offset() if self.resume_offset is not None else 0
        for batch in batches[self.rank :: self.num_replicas][skip:]:
            yield batch.tolist()

    def __len__(self) -> int:
        total = len(self._all_batches())
        if self.equal_per_rank:
            return total // self.num_replicas
        return len(range(self.rank, total, self.num_replicas))

    def _all_batches(self) -> list[np.ndarray]:
        """Every rank's batches for this epoch, identical on every rank."""
        index = np.int32 if len(self.costs) < 2**31 else np.int64
        if self.shuffle:
            generator = np.random.default_rng((self.seed, self.epoch))
            order = generator.permutation(len(self.costs)).astype(index)
            order = order[np.argsort(self.costs[order], kind="stable")]
        else:
            generator = None
            order = np.argsort(self.costs, kind="stable").astype(index)
        batches = cut_batches(self.costs[order], self.max_tokens)
        if generator is not None:
            batches = [batches[i] for i in generator.permutation(len(batches))]
        return [order[start:end] for start, end in batches]


def cut_batches(sorted_costs: np.ndarray, max_tokens: int) -> list[tuple[int, int]]:
    """Greedy [start, end) cuts of ascending costs, each the largest with size x last cost <= max.

    size x costs[start + size - 1] grows with size, so the largest fitting size is found by
    bisection: a few Python steps per batch, none per pair.
    """
    cuts = []
    start, total = 0, len(sorted_costs)
    while start < total:
        low, high = 1, min(total - start, max(1, max_tokens // int(sorted_costs[start])))
        while low < high:  # invariant: size `low` fits (or is the lone pair over budget)
            middle = (low + high + 1) // 2
            if middle * int(sorted_costs[start + middle - 1]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        cuts.append((start, start + low))
        start += low
    return cuts
