"""`EventStorage`: the scalars of the current iteration, for hooks to put and writers to read."""
import statistics
from collections import defaultdict, deque
from typing import Deque, Dict, Tuple


class EventStorage:
    """Latest value (and iteration) of each named scalar, plus a short window for smoothed console output."""

    def __init__(self, start_iter: int = 0, window: int = 20) -> None:
        self.iter = start_iter
        self._latest: Dict[str, Tuple[float, int]] = {}
        self._windows: Dict[str, Deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.loss_names: Tuple[str, ...] = ()  # the model's own loss names (besides the total, `loss`)
        self.version = 0  # counts the records, so that a writer can tell whether anything is new

    def put_scalar(self, name: str, value: float) -> None:
        """Record `value` for `name` at the current iteration."""
        value = float(value)
        self.version += 1
        self._latest[name] = (value, self.iter)
        self._windows[name].append(value)

    def put_scalars(self, **values: float) -> None:
        """Record several scalars at once."""
        for name, value in values.items():
            self.put_scalar(name, value)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """name -> (value, iteration) of the last record of each scalar."""
        return dict(self._latest)

    def median(self, name: str) -> float:
        """Median of the recent values of `name`."""
        return statistics.median(self._windows[name])
