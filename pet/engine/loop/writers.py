"""Event writers: console lines with ETA, `metrics.json` (JSON lines) and TensorBoard event files."""
import datetime
import json
import logging
import os
import resource
from typing import Dict, List, Protocol, Tuple

import torch

from pet.engine.loop.events import EventStorage
from pet.engine.persistence.safe_files import atomic_write, no_follow

logger = logging.getLogger(__name__)

MAX_LR_COLUMNS = 4  # groups whose lrs the console shows one by one


class EventWriter(Protocol):
    """What `PeriodicWriter` calls: `write` at each period, `close` at the end."""

    def write(self, storage: EventStorage) -> None: ...

    def close(self) -> None: ...


def _updated_since(storage: EventStorage, last_iter: int) -> Dict[int, Dict[str, float]]:
    """The scalars recorded after `last_iter`, grouped by iteration."""
    by_iter: Dict[int, Dict[str, float]] = {}
    for name, (value, iteration) in storage.latest().items():
        if iteration > last_iter:
            by_iter.setdefault(iteration, {})[name] = value
    return by_iter


def peak_memory() -> str:
    """The process's peak memory: allocated on the GPU when CUDA is in use, else the resident set size."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return f"{torch.cuda.max_memory_allocated() / 2 ** 20:.0f}M"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}M"  # Linux counts in KiB


def lr_parts(latest: Dict[str, Tuple[float, int]]) -> List[str]:
    """`lr: v` when every group trains at one lr; each group's `lr/<group>: v` for up to four different lrs; the
    range beyond (layer decay: a dozen groups)."""
    groups = {name: value for name, (value, _) in latest.items() if name.startswith("lr/")}
    if not groups:
        return [f"lr: {latest['lr'][0]:.6g}"] if "lr" in latest else []
    values = set(groups.values())
    if len(values) == 1:
        return [f"lr: {values.pop():.6g}"]
    if len(groups) <= MAX_LR_COLUMNS:
        return [f"{name}: {value:.6g}" for name, value in groups.items()]
    return [f"lr: {min(values):.6g}..{max(values):.6g} ({len(groups)} groups)"]


class ConsoleWriter:
    """Logs `iter: 119/900  eta: 0:01:05  loss: 0.3012  loss_cls: 0.3012  lr: 0.05  time: 0.0712  data_time: 0.0011
    max_mem: 812M` style lines: the iteration numbered as in metrics.json and TensorBoard (from 0), the losses as
    medians of the last iterations (metrics.json keeps each iteration's own), the lr of each group where they
    differ, gradient norms and validation results on the line of the iteration that computed them only. `time` is
    the median of recent iterations and `data_time` the part of it spent waiting for the loader; the ETA comes
    from the mean time of every iteration so far, so that it does not swing with a few slow ones."""

    def __init__(self, max_iter: int) -> None:
        self.max_iter = max_iter

    def write(self, storage: EventStorage) -> None:
        latest = storage.latest()
        parts = [f"iter: {storage.iter}/{self.max_iter}"]
        if "time" in latest:
            seconds = storage.mean("time") * (self.max_iter - storage.iter - 1)
            parts.append(f"eta: {datetime.timedelta(seconds=int(seconds))}")
        for name in ("loss",) + storage.loss_names:
            if name in latest:
                parts.append(f"{name}: {storage.median(name):.4f}")
        parts += lr_parts(latest)
        grad_norms = sorted(name for name in latest if name.split("/")[0] == "grad_norm")
        now = {name for name, (_, iteration) in latest.items() if iteration == storage.iter}
        for name in (*grad_norms, "val/accuracy", "val/mAP", "val_ema/accuracy", "val_ema/mAP", "skipped_updates"):
            if name in latest and (name in now or name == "skipped_updates"):
                parts.append(f"{name}: {latest[name][0]:.6g}")
        for name in ("time", "data_time"):
            if name in latest:
                parts.append(f"{name}: {storage.median(name):.4f}")
        parts.append(f"max_mem: {peak_memory()}")
        logger.info("  ".join(parts))

    def close(self) -> None:
        pass


class JSONWriter:
    """Appends one JSON line per written iteration to `path`: {"iteration": i, name: value, ...}.

    Opened for a run that starts at `start_iter`, it first drops the lines of iterations >= start_iter: those a
    killed run wrote after its last checkpoint, or all of an earlier run's when a new one starts at 0. The file
    is then the history of one uninterrupted run.
    """

    def __init__(self, path: str, start_iter: int = 0) -> None:
        self.path = path
        self._last_iter = start_iter - 1
        if os.path.exists(path):
            self._truncate(start_iter)
        self._file = open(path, "a", encoding="utf-8", opener=no_follow)

    def _truncate(self, start_iter: int) -> None:
        """Keep the lines of iterations before `start_iter`, in a new file that replaces the old one (a hard link
        to the old file elsewhere keeps the old contents). A line a killed run left half-written is dropped."""
        kept, torn = [], 0
        with open(self.path, encoding="utf-8", errors="replace", opener=no_follow) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError):
                    row = None
                if not (isinstance(row, dict) and isinstance(row.get("iteration"), int)):
                    torn += 1  # half-written by a killed run, or no row of this file at all
                elif row["iteration"] < start_iter:
                    kept.append(line if line.endswith("\n") else line + "\n")
        if torn:
            logger.warning("%s: dropped %d line(s) that a killed run left half-written, or that are no rows of it",
                           self.path, torn)
        atomic_write(self.path, lambda f: f.write("".join(kept).encode()))

    def write(self, storage: EventStorage) -> None:
        for iteration, values in sorted(_updated_since(storage, self._last_iter).items()):
            self._file.write(json.dumps({"iteration": iteration, **values}, sort_keys=True) + "\n")
        self._file.flush()
        self._last_iter = storage.iter

    def close(self) -> None:
        self._file.close()


class TensorboardWriter:
    """Writes every scalar to TensorBoard event files in `log_dir`; events of earlier runs from `start_iter` on
    (a killed run's last steps, or a whole earlier run when a new one starts at 0) are purged."""

    def __init__(self, log_dir: str, start_iter: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported late: TensorBoard is slow to import

        self._writer = SummaryWriter(log_dir, purge_step=start_iter)
        self._last_iter = start_iter - 1

    def write(self, storage: EventStorage) -> None:
        for iteration, values in sorted(_updated_since(storage, self._last_iter).items()):
            for name, value in values.items():
                self._writer.add_scalar(name, value, iteration)
        self._writer.flush()
        self._last_iter = storage.iter

    def close(self) -> None:
        self._writer.close()

