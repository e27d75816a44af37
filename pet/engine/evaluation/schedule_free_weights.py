"""The weights a run with a schedule-free optimizer evaluates and saves: the optimizer's average, with BatchNorm
statistics recomputed for it.

BatchNorm's running statistics were gathered at the training weights, not at the average `eval()` puts into the
model; schedulefree's documentation has them recomputed with a few training batches in train mode before an
evaluation. We do that with torch's `update_bn` (statistics reset, then a cumulative average over the batches) on
the first `BATCH_STATISTICS_BATCHES` micro-batches of this process's training stream, in a fixed order and under a
forked RNG, so that the training run itself draws nothing more and resumes exactly.
"""
import contextlib
import itertools
from typing import Callable, Iterator, List, Optional

import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader

from pet.solver.optimizers.schedule_free import evaluation_mode, schedule_free

BATCH_STATISTICS_BATCHES = 50  # as schedulefree's documentation suggests


def has_batch_statistics(model: nn.Module) -> bool:
    """Whether `model` keeps BatchNorm running statistics (frozen BatchNorm keeps none that move)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules())


def recompute_batch_statistics(model: nn.Module, loader: DataLoader, device: torch.device,
                               batches: int = BATCH_STATISTICS_BATCHES) -> None:
    """BatchNorm statistics of `model` at its present weights, from the first `batches` (images, labels) batches
    of `loader`; the global RNG is left as it was."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        images = (batch[0] for batch in itertools.islice(loader, batches))
        update_bn(images, model, device)


@contextlib.contextmanager
def averaged_weights(optimizers: List[torch.optim.Optimizer], model: nn.Module,
                     statistics_loader: Optional[Callable[[], DataLoader]], device: torch.device) -> Iterator[None]:
    """Within the block, `model` holds the schedule-free optimizers' averaged weights, with BatchNorm statistics
    recomputed for them from a fresh `statistics_loader()` (a classification loader; None skips it: a detector in
    train mode needs its targets, and torchvision's detectors freeze their BatchNorm). Outside it, the training
    weights. A no-op without a schedule-free optimizer."""
    with evaluation_mode(optimizers):
        if schedule_free(optimizers) and statistics_loader is not None and has_batch_statistics(model):
            recompute_batch_statistics(model, statistics_loader(), device)
        yield
