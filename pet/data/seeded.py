"""Per-sample randomness as a function of (SEED, epoch, sample index): the random crops and flips of a sample are
the same whichever process or data-loader worker decodes it, and a resumed run draws exactly the augmentations
an uninterrupted one would (worker processes start with fresh random states on every launch, so drawing from
them would not resume). The batch sampler hands over (epoch, index) pairs; each sample is decoded with torch's,
Python's and NumPy's generators seeded for it, and, in the main process, the training's own random state is left
as it was."""
import random
from typing import Any, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

# Knuth's multiplicative constants: (seed, epoch, index) -> one 63-bit seed, a different one for every triple.
_MIX_A, _MIX_B = 6364136223846793005, 1442695040888963407


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample `index` in `epoch` of a run seeded with `seed`."""
    value = seed
    for part in (epoch, index):
        value = (value * _MIX_A + part + _MIX_B) % (1 << 63)
    return value


def samples_are_random(dataset: Dataset) -> bool:
    """Whether a data set may draw random numbers per sample (augmentations): this project's own deterministic
    sets say they do not; anyone else's is taken to."""
    return getattr(dataset, "random_samples", True)


class SeededSamples(Dataset):
    """`dataset` read by (epoch, index) keys, each sample drawn with generators seeded by `sample_seed`."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]) -> Any:
        epoch, index = key
        seed = sample_seed(self.seed, epoch, index)
        if get_worker_info() is not None:  # a worker's generators are its own
            return self._seeded(index, seed)
        python, numpy = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                return self._seeded(index, seed)
        finally:
            random.setstate(python)
            np.random.set_state(numpy)

    def _seeded(self, index: int, seed: int) -> Any:
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        return self.dataset[index]
