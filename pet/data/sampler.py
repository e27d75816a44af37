"""The training batch order: an endless, seeded, resumable stream of micro-batches, split across processes.

Epoch e shuffles the whole data set with seed + e. Process r of w takes every w-th index of that order, starting
at r, and cuts it into micro-batches; an update takes `accumulation` consecutive micro-batches. Two properties
follow, and the tests rely on them:
- 2 processes with batch B see, together, exactly the batches one process with batch 2B sees, and B with 4
  accumulation steps sees what 4B with one step sees (epochs hold a whole number of updates in every case);
- the stream can start at any update: a resumed run continues with the batch an uninterrupted run would take.
"""
from typing import Iterator, List

import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[List[int]]):
    """Endless micro-batches of dataset indices for one process, starting at update `start_iter`.

    Args:
        dataset_size: number of samples.
        batch_size: samples per micro-batch on this process.
        accumulation: micro-batches per optimizer update.
        rank, world_size: this process and the number of processes.
        seed: the shuffle seed; epoch e uses seed + e.
        start_iter: the update to start at.
    """

    def __init__(self, dataset_size: int, batch_size: int, accumulation: int = 1, rank: int = 0,
                 world_size: int = 1, seed: int = 0, start_iter: int = 0) -> None:
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.accumulation = accumulation
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_iter = start_iter
        if self.updates_per_epoch < 1:
            raise ValueError(f"{dataset_size} samples cannot fill one update of {batch_size} x {accumulation} "
                             f"micro-batches on each of {world_size} processes")

    @property
    def updates_per_epoch(self) -> int:
        """Whole optimizer updates in one pass over the data (the remainder of the shuffle is dropped)."""
        return self.dataset_size // self.world_size // (self.batch_size * self.accumulation)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This process's indices for one epoch."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.dataset_size, generator=generator)[self.rank::self.world_size]

    def __iter__(self) -> Iterator[List[int]]:
        batches_per_epoch = self.updates_per_epoch * self.accumulation
        position = self.start_iter * self.accumulation  # micro-batches already consumed
        while True:
            epoch, first = divmod(position, batches_per_epoch)
            order = self.epoch_order(epoch)
            for batch in range(first, batches_per_epoch):
                yield order[batch * self.batch_size:(batch + 1) * self.batch_size].tolist()
            position = (epoch + 1) * batches_per_epoch
