"""`EventStorage`: the scalars of the current iteration, for hooks to put and writers to read.

A value may be put as a device tensor (a loss, a skip count, a gradient norm): it is kept as it is and read on the
host only when a writer asks for it (`latest`, `median`), so recording costs no synchronisation with the device.
"""
import statistics
from collections import defaultdict, deque
from typing import Deque, Dict, Tuple, Union

import torch

Value = Union[float, torch.Tensor]


def as_float(value: Value) -> float:
    """A recorded value on the host (reading a device tensor waits for it)."""
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


class EventStorage:
    """Latest value (and iteration) of each named scalar, plus a short window for smoothed console output."""

    def __init__(self, start_iter: int = 0, window: int = 20) -> None:
        self.iter = start_iter
        self._latest: Dict[str, Tuple[Value, int]] = {}
        self._windows: Dict[str, Deque[Value]] = defaultdict(lambda: deque(maxlen=window))
        self._totals: Dict[str, Tuple[float, int]] = {}  # host values only: sum and count since the start
        self.loss_names: Tuple[str, ...] = ()  # the model's own loss names (besides the total, `loss`)
        self.version = 0  # counts the records, so that a writer can tell whether anything is new

    def put_scalar(self, name: str, value: Value) -> None:
        """Record `value` for `name` at the current iteration (a tensor is read later, when written)."""
        value = value.detach() if isinstance(value, torch.Tensor) else float(value)
        self.version += 1
        self._latest[name] = (value, self.iter)
        self._windows[name].append(value)
        if not isinstance(value, torch.Tensor):
            total, count = self._totals.get(name, (0.0, 0))
            self._totals[name] = (total + value, count + 1)

    def put_scalars(self, **values: Value) -> None:
        """Record several scalars at once."""
        for name, value in values.items():
            self.put_scalar(name, value)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """name -> (value, iteration) of the last record of each scalar, read on the host (once: the floats are
        kept for the next writer)."""
        for name, (value, iteration) in self._latest.items():
            if isinstance(value, torch.Tensor):
                self._latest[name] = (as_float(value), iteration)
        return dict(self._latest)

    def median(self, name: str) -> float:
        """Median of the recent values of `name`."""
        return statistics.median(as_float(value) for value in self._windows[name])

    def mean(self, name: str) -> float:
        """Mean of every value of `name` recorded as a number since the storage began (a run's start)."""
        total, count = self._totals[name]
        return total / count
