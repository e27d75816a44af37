"""The training batch order: an endless, seeded, resumable stream of micro-batches, split across processes.

Epoch e shuffles the whole data set with seed + e. Process r of w takes every w-th index of that order, starting
at r, and cuts it into micro-batches; an update takes `accumulation` consecutive micro-batches. Two properties
follow, and the tests rely on them:
- 2 processes with batch B see, together, exactly the batches one process with batch 2B sees, and B with 4
  accumulation steps sees what 4B with one step sees (epochs hold a whole number of updates in every case);
- the stream can start at any update: a resumed run continues with the batch an uninterrupted run would take;
- the processes together always take a prefix of each epoch's order, so a run resumed with another number of
  processes continues at the same sample (`position_at`, `start_position`).
"""
from typing import Any, Iterator, List, Optional, Tuple

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
        start_position: instead, (epoch, samples of its order taken): where a run with another number of
            processes stopped (its sampler's `position_at`); the rest of that epoch is shared among these.
        tag_epochs: yield (epoch, index) pairs instead of indices (for `pet.data.seeded.SeededSamples`).
    """

    def __init__(self, dataset_size: int, batch_size: int, accumulation: int = 1, rank: int = 0,
                 world_size: int = 1, seed: int = 0, start_iter: int = 0,
                 start_position: Optional[Tuple[int, int]] = None, tag_epochs: bool = False) -> None:
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.accumulation = accumulation
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_iter = start_iter
        self.start_position = start_position
        self.tag_epochs = tag_epochs
        if self.updates_per_epoch < 1:
            raise ValueError(f"{dataset_size} samples cannot fill one update of {batch_size} x {accumulation} "
                             f"micro-batches on each of {world_size} processes")

    @property
    def updates_per_epoch(self) -> int:
        """Whole optimizer updates in one pass over the data (the remainder of the shuffle is dropped)."""
        return self.dataset_size // self.world_size // (self.batch_size * self.accumulation)

    def epoch_order(self, epoch: int, taken: int = 0) -> torch.Tensor:
        """This process's indices for one epoch, after the first `taken` samples of its order."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.dataset_size, generator=generator)[taken:][self.rank::self.world_size]

    def position_at(self, iteration: int) -> Tuple[int, int]:
        """(epoch, samples of its order the processes have taken together) when update `iteration` starts, for
        `iteration` >= `start_iter`: what a checkpoint keeps, so that a resume with another number of processes,
        batch or accumulation continues at the same sample (the stream's own start counted in)."""
        per_update = self.batch_size * self.accumulation * self.world_size
        done = iteration - self.start_iter
        if self.start_position is not None:
            epoch, taken = self.start_position
            left = (self.dataset_size - taken) // self.world_size // (self.batch_size * self.accumulation)
            if done < left:
                return epoch, taken + done * per_update
            epoch, updates = divmod(done - left, self.updates_per_epoch)
            return self.start_position[0] + 1 + epoch, updates * per_update
        epoch, updates = divmod(iteration, self.updates_per_epoch)
        return epoch, updates * per_update

    def __iter__(self) -> Iterator[List[Any]]:
        batches_per_epoch = self.updates_per_epoch * self.accumulation
        position = self.start_iter * self.accumulation  # micro-batches already consumed
        if self.start_position is not None:
            epoch, taken = self.start_position
            order = self.epoch_order(epoch, taken)
            updates = (self.dataset_size - taken) // self.world_size // (self.batch_size * self.accumulation)
            for batch in range(updates * self.accumulation):
                yield self._batch(order, batch, epoch)
            position = (epoch + 1) * batches_per_epoch
        while True:
            epoch, first = divmod(position, batches_per_epoch)
            order = self.epoch_order(epoch)
            for batch in range(first, batches_per_epoch):
                yield self._batch(order, batch, epoch)
            position = (epoch + 1) * batches_per_epoch

    def _batch(self, order: torch.Tensor, batch: int, epoch: int) -> List[Any]:
        indices = order[batch * self.batch_size:(batch + 1) * self.batch_size].tolist()
        return [(epoch, index) for index in indices] if self.tag_epochs else indices
