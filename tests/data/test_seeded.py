"""Per-sample randomness seeded by (SEED, epoch, index): the same augmentations in any process or worker, and a
resumed loader draws what an uninterrupted one draws."""
import itertools
import random

import numpy as np
import torch
from torch.utils.data import Dataset

from pet.config import get_cfg
from pet.data import build_train_loader
from pet.data.seeded import SeededSamples, sample_seed


class Augmented(Dataset):
    """A sample is its index plus what an augmentation draws from torch's, Python's and NumPy's generators."""

    def __len__(self):
        return 40

    def __getitem__(self, index):
        return torch.tensor([float(index), torch.rand(()).item(), random.random(), np.random.rand()]), index % 2


def loader(workers, start_iter=0, start_position=None):
    cfg = get_cfg()
    cfg.merge_from_list(["TRAIN.BATCH_SIZE", 4, "DATA.NUM_WORKERS", workers, "SEED", 3])
    return build_train_loader(cfg, Augmented(), start_iter=start_iter, start_position=start_position)


def batches(source, count):
    return [images for images, _ in itertools.islice(source, count)]


def test_a_sample_draws_the_same_numbers_for_the_same_epoch_and_index_only():
    samples = SeededSamples(Augmented(), seed=3)
    first, again, next_epoch = samples[(0, 7)], samples[(0, 7)], samples[(1, 7)]
    assert torch.equal(first[0], again[0])
    assert not torch.equal(first[0][1:], next_epoch[0][1:]) and first[0][0] == next_epoch[0][0]
    assert len({sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}) == 450


def test_drawing_a_sample_leaves_the_trainings_random_state_as_it_was():
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    SeededSamples(Augmented(), seed=3)[(0, 1)]
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_workers_draw_the_augmentations_the_main_process_draws():
    in_process, in_workers = batches(loader(0), 25), batches(loader(2), 25)  # 10 updates per epoch: 3 epochs
    assert all(torch.equal(a, b) for a, b in zip(in_process, in_workers))


def test_a_resumed_loader_draws_what_the_uninterrupted_one_draws():
    whole = batches(loader(2), 25)
    resumed = batches(loader(2, start_iter=13), 12)  # a fresh loader and fresh workers, as after a restart
    assert all(torch.equal(a, b) for a, b in zip(whole[13:], resumed))
    by_position = batches(loader(2, start_iter=13, start_position=(1, 12)), 12)  # what a checkpoint hands over
    assert all(torch.equal(a, b) for a, b in zip(whole[13:], by_position))
