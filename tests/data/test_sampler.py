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


def samples_taken(samplers, updates, accumulation):
    """The samples the processes of `samplers` take together in their first `updates` updates."""
    return [i for sampler in samplers for micro in itertools.islice(sampler, updates * accumulation) for i in micro]


@pytest.mark.parametrize("parts", [((2, 8, 1), (1, 16, 1), (2, 4, 2)), ((1, 6, 2), (3, 2, 1), (1, 5, 1))])
def test_a_chain_of_resumes_with_other_batches_and_processes_loses_and_repeats_no_sample(parts):
    """Each part: (processes, batch, accumulation); each stops after 4 updates and hands its position on, as a
    checkpoint does. Together they take a prefix of the epoch's shuffled order: no sample lost, none twice."""
    size, seed = 1000, 3
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    position, start, seen = None, 0, []
    for world, batch, accumulation in parts:
        samplers = [ResumableBatchSampler(size, batch, accumulation, rank, world, seed=seed, start_iter=start,
                                          start_position=position) for rank in range(world)]
        seen += samples_taken(samplers, 4, accumulation)
        start += 4
        position = samplers[0].position_at(start)
        assert position == (0, len(seen))
    assert sorted(seen) == sorted(order[:len(seen)]) and len(set(seen)) == len(seen)


def test_positions_cross_into_the_next_epoch_after_a_resumed_partial_epoch():
    sampler = ResumableBatchSampler(100, 5, 2, 0, 2, seed=0, start_iter=7, start_position=(3, 60))
    # 40 samples of epoch 3 left: 2 updates of 20; then epoch 4 from its start (5 updates per epoch)
    assert [sampler.position_at(k) for k in (7, 8, 9, 10, 14, 15)] == [(3, 60), (3, 80), (4, 0), (4, 20), (5, 0),
                                                                        (5, 20)]


def test_after_16_images_x_4_updates_a_resume_starts_at_sample_64_whatever_its_batch():
    old = [ResumableBatchSampler(1000, 8, 1, rank, 2, seed=0) for rank in range(2)]
    position = old[0].position_at(4)
    assert position == (0, 64)
    resumed = ResumableBatchSampler(1000, 16, 1, 0, 1, seed=0, start_iter=4, start_position=position)
    assert next(iter(resumed)) == resumed.epoch_order(0)[64:80].tolist()
    assert resumed.position_at(5) == (0, 80)
