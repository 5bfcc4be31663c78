import numpy as np
import pytest

from seq2seq.data.sampler import TokenBatchSampler, cut_batches


@pytest.fixture
def lengths() -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(0)
    return generator.integers(1, 60, size=2000), generator.integers(1, 70, size=2000)


def batch_cost(batch: list[int], src: np.ndarray, tgt: np.ndarray) -> int:
    return len(batch) * int(max(src[batch].max(), tgt[batch].max()) + 1)


def test_epoch_covers_every_pair_once_within_budget(lengths) -> None:
    src, tgt = lengths
    sampler = TokenBatchSampler(src, tgt, max_tokens=500, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        seen = np.concatenate(batches)
        assert sorted(seen.tolist()) == list(range(len(src)))
        assert max(batch_cost(b, src, tgt) for b in batches) <= 500


def test_batches_group_similar_lengths(lengths) -> None:
    src, tgt = lengths
    batches = list(TokenBatchSampler(src, tgt, max_tokens=500, seed=3))
    costs = np.maximum(src, tgt) + 1
    padding = sum(len(b) * costs[b].max() - costs[b].sum() for b in batches)
    assert padding / costs.sum() < 0.05


def test_epochs_differ_and_repeat_with_the_seed(lengths) -> None:
    src, tgt = lengths
    first = TokenBatchSampler(src, tgt, max_tokens=500, seed=3)
    again = TokenBatchSampler(src, tgt, max_tokens=500, seed=3)
    epoch0 = list(first)
    assert list(again) == epoch0
    first.set_epoch(1)
    assert list(first) != epoch0


@pytest.mark.parametrize("num_replicas", [2, 3, 4])
def test_ranks_get_disjoint_and_equally_many_batches(lengths, num_replicas: int) -> None:
    src, tgt = lengths
    per_rank = [
        list(TokenBatchSampler(src, tgt, max_tokens=500, seed=3, num_replicas=num_replicas, rank=r))
        for r in range(num_replicas)
    ]
    assert len({len(batches) for batches in per_rank}) == 1
    assert all(
        len(batches) == len(TokenBatchSampler(src, tgt, 500, num_replicas=num_replicas, rank=0))
        for batches in per_rank
    )
    seen = np.concatenate([np.concatenate(batches) for batches in per_rank])
    assert len(seen) == len(set(seen.tolist()))
    total = len(list(TokenBatchSampler(src, tgt, max_tokens=500, seed=3)))
    assert len(per_rank[0]) == total // num_replicas


def test_evaluation_split_covers_everything_across_ranks(lengths) -> None:
    src, tgt = lengths
    per_rank = [
        list(
            TokenBatchSampler(
                src, tgt, 500, shuffle=False, num_replicas=3, rank=r, equal_per_rank=False
            )
        )
        for r in range(3)
    ]
    seen = np.concatenate([np.concatenate(batches) for batches in per_rank])
    assert sorted(seen.tolist()) == list(range(len(src)))
    ordered = np.concatenate(list(TokenBatchSampler(src, tgt, 500, shuffle=False)))
    costs = (np.maximum(src, tgt) + 1)[ordered]
    assert (np.diff(costs) >= 0).all()


def test_pair_over_budget_gets_its_own_batch() -> None:
    assert cut_batches(np.array([2, 2, 3, 50]), max_tokens=10) == [(0, 3), (3, 4)]


def test_invalid_rank() -> None:
    with pytest.raises(ValueError, match="rank 2 outside"):
        TokenBatchSampler(np.ones(3), np.ones(3), 10, num_replicas=2, rank=2)


def test_resume_offset_skips_batches_already_trained(lengths) -> None:
    src, tgt = lengths
    full = list(TokenBatchSampler(src, tgt, max_tokens=500, seed=3))
    resumed = list(TokenBatchSampler(src, tgt, max_tokens=500, seed=3, resume_offset=lambda: 5))
    assert resumed == full[5:]
