"""Schedule-free optimizers (`schedulefree.AdamWScheduleFree`, `SGDScheduleFree`, ...): they keep two sequences of
weights and expose the one to train at with `train()` and the averaged one to evaluate with `eval()`. The trainer
switches them: `train()` before training steps, `eval()` around evaluations and checkpoint writes (so the saved
weights are the ones to use), `train()` again after."""
import contextlib
from typing import Iterable, Iterator, List

import torch


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer` has schedulefree's `train()` / `eval()` switch (torch's optimizers have none)."""
    return callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))


def schedule_free(optimizers: Iterable[torch.optim.Optimizer]) -> List[torch.optim.Optimizer]:
    """The schedule-free ones among `optimizers`."""
    return [optimizer for optimizer in optimizers if is_schedule_free(optimizer)]


def training_mode(optimizers: Iterable[torch.optim.Optimizer]) -> None:
    """Put schedule-free optimizers' training weights into the model (a no-op for the others)."""
    for optimizer in schedule_free(optimizers):
        optimizer.train()


@contextlib.contextmanager
def evaluation_mode(optimizers: Iterable[torch.optim.Optimizer]) -> Iterator[None]:
    """Within the block, the model holds schedule-free optimizers' averaged weights; training weights after."""
    switched = schedule_free(optimizers)
    for optimizer in switched:
        optimizer.eval()
    try:
        yield
    finally:
        for optimizer in switched:
            optimizer.train()
