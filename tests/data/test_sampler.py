"""The resumable batch order: processes and accumulation see the same samples as one big batch; resume continues."""
import itertools

import pytest
import torch

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


@pytest.mark.parametrize("before, after, accumulation", [(2, 1, 1), (1, 2, 1), (2, 3, 2)])
def test_a_resume_with_another_number_of_processes_continues_at_the_same_sample(before, after, accumulation):
    size, batch, done = 101, 4, 3  # 3 updates done before the resume
    epoch_order = torch.randperm(size, generator=torch.Generator().manual_seed(5)).tolist()  # epoch 0, seed 5 + 0
    old = [ResumableBatchSampler(size, batch, accumulation, rank, before, seed=5) for rank in range(before)]
    taken = [i for sampler in old for micro in itertools.islice(sampler, done * accumulation) for i in micro]
    position = old[0].position_at(done)
    assert position == (0, len(taken))
    assert sorted(taken) == sorted(epoch_order[:len(taken)])  # together, a prefix of the epoch's order

    new = [ResumableBatchSampler(size, batch, accumulation, rank, after, seed=5, start_position=position)
           for rank in range(after)]
    rest = (size - len(taken)) // after // (batch * accumulation) * accumulation  # whole updates left in epoch 0
    streams = [iter(sampler) for sampler in new]
    later = [i for stream in streams for micro in itertools.islice(stream, rest) for i in micro]
    assert sorted(later) == sorted(epoch_order[len(taken):len(taken) + len(later)])  # no sample twice, none lost
    assert len(later) == rest * batch * after
    # then epoch 1 from its start, as a run of `after` processes would take it
    fresh = ResumableBatchSampler(size, batch, accumulation, 0, after, seed=5)
    assert next(streams[0]) == fresh.epoch_order(1)[:batch].tolist()
