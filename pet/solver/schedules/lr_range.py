"""The math of the lr range test (Smith, 2015; the `lr_find` of fastai and Lightning): the lr rises exponentially
from `start` to `end` over `iters` updates, the loss is smoothed by a bias-corrected exponential moving average,
the sweep stops once the smoothed loss exceeds `DIVERGENCE_FACTOR` times its best, and the suggestion is the lr
where the smoothed loss falls fastest against log(lr).

Pure functions of the losses seen: the driver (`pet.engine.runs.lr_finder`) runs the updates.

Example:
    >>> sweep = LRSweep(start=1e-5, end=1.0, iters=50)
    >>> for i in range(sweep.iters):
    ...     loss = train_one_update(lr=sweep.lr(i))
    ...     if sweep.record(loss):  # True once the loss diverged
    ...         break
    >>> sweep.suggestion()
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

DIVERGENCE_FACTOR = 4.0  # the sweep stops when the smoothed loss exceeds this multiple of its best
SMOOTHING = 0.98  # the moving average's weight of the past, as fastai and Lightning
SKIP_START = 0.1  # the share of the first points the suggestion ignores: the average is still settling there


@dataclass
class LRSweep:
    """An exponential lr sweep and the losses it produced.

    Args:
        start, end: the first and the last lr (0 < start < end).
        iters: the number of updates (at least 2).
        smoothing: the moving average's weight of the past, in [0, 1).
    """

    start: float
    end: float
    iters: int
    smoothing: float = SMOOTHING
    lrs: List[float] = field(default_factory=list)
    losses: List[float] = field(default_factory=list)
    smoothed: List[float] = field(default_factory=list)
    diverged: bool = False
    _average: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.start < self.end or not math.isfinite(self.end):
            raise ValueError(f"the sweep needs 0 < start < end; got start {self.start}, end {self.end}")
        if self.iters < 2:
            raise ValueError(f"the sweep needs at least 2 updates; got {self.iters}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing must lie in [0, 1); got {self.smoothing}")

    def lr(self, i: int) -> float:
        """The lr of update i: start x (end / start)^(i / (iters - 1))."""
        return self.start * (self.end / self.start) ** (i / (self.iters - 1))

    def record(self, loss: float) -> bool:
        """Add the loss of the next update; return whether the sweep must stop (a non-finite loss, or a smoothed
        loss above DIVERGENCE_FACTOR x its best)."""
        i = len(self.losses)
        self.lrs.append(self.lr(i))
        self.losses.append(loss)
        if not math.isfinite(loss):
            self.smoothed.append(math.inf)
            self.diverged = True
            return True
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        self.smoothed.append(self._average / (1 - self.smoothing ** (i + 1)))
        best = min(self.smoothed)
        self.diverged = i > 0 and self.smoothed[-1] > DIVERGENCE_FACTOR * best
        return self.diverged

    def suggestion(self) -> Optional[float]:
        """The lr of the steepest descent of the smoothed loss against log(lr), among the points past the first
        SKIP_START of the sweep and up to the smoothed loss's lowest point: beyond it training is diverging, and a
        loss that falls again there (a model that blew up and partly recovers) is no lr to train at. None with too
        few points."""
        end = len(self.smoothed) - 1 if self.diverged else len(self.smoothed)
        finite = [value if math.isfinite(value) else math.inf for value in self.smoothed[:end]]
        end = min(end, int(np.argmin(finite)) + 1) if finite else end
        first = int(SKIP_START * self.iters)
        if end - first < 3:
            return None
        log_lrs = np.log(self.lrs[first:end])
        slopes = np.gradient(np.asarray(self.smoothed[first:end]), log_lrs)
        return self.lrs[first + int(np.argmin(slopes))]

    def curve(self) -> Dict[str, object]:
        """The sweep as JSON-ready data (a non-finite loss as null)."""
        finite = lambda values: [value if math.isfinite(value) else None for value in values]  # noqa: E731
        return {"lr": self.lrs, "loss": finite(self.losses), "smoothed_loss": finite(self.smoothed),
                "diverged": self.diverged,
                "stop_lr": self.lrs[-1] if self.diverged else None, "suggested_lr": self.suggestion(),
                "start": self.start, "end": self.end, "iters": self.iters, "smoothing": self.smoothing}
