"""The resumable batch order: processes and accumulation see the same samples as one big batch; resume continues."""
import itertools

import pytest

from pet.data import ResumableBatchSampler


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_two_processes_see_what_one_process_with_twice_the_batch_sees():
    one = take(ResumableBatchSampler(100, 10, seed=7), 12)  # 5 updates per epoch: crosses two epochs
    rank0 = take(ResumableBatchSampler(100, 5, rank=0, world_size=2, seed=7), 12)
    rank1 = take(ResumableBatchSampler(100, 5, rank=1, world_size=2, seed=7), 12)
    for big, a, b in zip(one, rank0, rank1):
        assert sorted(big) == sorted(a + b)
        assert not set(a) & set(b)


def test_accumulated_micro_batches_make_up_the_big_batch():
    big = take(ResumableBatchSampler(103, 12, seed=1), 10)
    micro = take(ResumableBatchSampler(103, 3, accumulation=4, seed=1), 40)
    for index, batch in enumerate(big):
        assert batch == sum(micro[4 * index:4 * index + 4], [])


def test_start_iter_continues_the_stream_exactly():
    sampler = ResumableBatchSampler(50, 4, accumulation=2, seed=0)
    full = take(sampler, 60)
    resumed = take(ResumableBatchSampler(50, 4, accumulation=2, seed=0, start_iter=17), 26)
    assert resumed == full[34:60]  # update 17 starts at micro-batch 34


def test_epochs_hold_whole_updates_and_reshuffle():
    sampler = ResumableBatchSampler(50, 4, accumulation=2, seed=0)
    assert sampler.updates_per_epoch == 6  # 50 // 8; the last 2 samples of each shuffle are dropped
    batches = take(sampler, 24)
    first, second = batches[:12], batches[12:]
    assert len({i for b in first for i in b}) == 48
    assert first != second


def test_too_little_data_for_one_update_is_refused():
    with pytest.raises(ValueError, match="cannot fill one update"):
        ResumableBatchSampler(10, 4, accumulation=2, world_size=2)
