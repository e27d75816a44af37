"""The training loop: `Trainer` runs the iterations of a run and calls the hooks around each.

What one iteration does (micro-batches, mixed precision, the optimizers' steps, skipping non-finite updates) is
`UpdateStep`'s job; the trainer counts the skipped updates, stops the run after too many in a row, and stops it
between updates when a stop signal arrives (`preemption`).

The losses and skip counts stay on the device: the storage keeps them as tensors and the writers read them at their
periods. The one thing the loop itself must know on the host, whether too many updates in a row were skipped, is
read one update late on an accelerator (from a copy started after that update, finished by the time the next one
is queued: no stall) and at once on the CPU, where reading costs nothing.
"""
import logging
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from torch import nn

from pet.data.sampler import ResumableBatchSampler
from pet.engine.distributed.preemption import StopSignals
from pet.engine.loop.events import EventStorage
from pet.engine.loop.hooks import HookBase
from pet.engine.loop.update_step import LossFunction, StepOutcome, UpdateStep, reads_are_free
from pet.errors import NonFiniteError, Preempted
from pet.solver.units import SolverUnit
from pet.state_fields import require_fields

logger = logging.getLogger(__name__)


class SkipCounts:
    """Skipped updates, in all and in a row, counted on the device from each update's 0/1 verdict."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.in_a_row = torch.zeros((), device=device)

    def add(self, skipped: torch.Tensor) -> None:
        """Count one update's verdict."""
        self.total = self.total + skipped
        self.in_a_row = (self.in_a_row + 1) * skipped

    def set(self, total: int, in_a_row: int) -> None:
        """Continue from saved counts."""
        self.total.fill_(total)
        self.in_a_row.fill_(in_a_row)


class TimedBatches:
    """The batches of a loader, adding up the time spent waiting for them (what `data_time` reports: a loader that
    cannot keep up with the updates shows here)."""

    def __init__(self, batches: Iterator[Any]) -> None:
        self.batches = batches
        self.waited = 0.0

    def __iter__(self) -> "TimedBatches":
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        try:
            return next(self.batches)
        finally:
            self.waited += time.perf_counter() - start

    def take(self) -> float:
        """The seconds waited since the last call."""
        waited, self.waited = self.waited, 0.0
        return waited


class LaggedRead:
    """The host's view of a device scalar, one update late where reading would stall the device: the copy of
    update k's value starts after update k is queued and is read after update k + 1 is queued, when it has long
    finished. On the CPU the value is read at once."""

    def __init__(self, device: torch.device) -> None:
        self.lag = not reads_are_free(device)
        self._pending: Optional[Tuple[int, torch.Tensor, Any]] = None

    def push(self, iteration: int, value: torch.Tensor) -> Optional[Tuple[int, float]]:
        """Hand over update `iteration`'s value; return (iteration, value) of the update now readable, if any."""
        if not self.lag:
            return iteration, value.item()
        ready, self._pending = self._pending, None
        host = value.detach().to("cpu", non_blocking=True)
        event = torch.cuda.Event() if value.is_cuda else None
        if event is not None:
            event.record()
        self._pending = (iteration, host, event)
        if ready is None:
            return None
        if ready[2] is not None:
            ready[2].synchronize()
        return ready[0], ready[1].item()


class Trainer:
    """Runs `max_iter - start_iter` optimizer updates and calls the hooks around each.

    Args:
        model: the module to train (DDP-wrapped when distributed).
        loss_fn: (model, batch) -> dict of losses; their sum is minimised.
        data: an endless iterable of micro-batches.
        units: the optimizers (clipping runs inside each step, as a pre-hook); a bare optimizer is one unit.
        device: where batches go.
        accumulation: micro-batches per update.
        amp_dtype: torch.float16 or torch.bfloat16 for autocast; None for full precision.
        grad_scaler: the float16 GradScaler (None otherwise).
        max_consecutive_skips: stop with `NonFiniteError` after this many skipped updates in a row (0: never).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFunction, data: Iterable[Any],
                 units: Union[List[SolverUnit], torch.optim.Optimizer], device: torch.device, accumulation: int = 1,
                 amp_dtype: Optional[torch.dtype] = None, grad_scaler: Optional[torch.amp.GradScaler] = None,
                 max_consecutive_skips: int = 0) -> None:
        self.model = model
        self.data = data
        self.units = [SolverUnit("", units)] if isinstance(units, torch.optim.Optimizer) else list(units)
        self.update_step = UpdateStep(model, loss_fn, self.units, device, accumulation, amp_dtype, grad_scaler)
        self.hooks: List[HookBase] = []
        self.iter = self.start_iter = self.max_iter = 0
        self.skips = SkipCounts(device)
        self.max_consecutive_skips = max_consecutive_skips
        self._in_a_row = LaggedRead(device)
        self.failure: Optional[BaseException] = None  # why training stopped early, for the hooks' after_train
        self.stop_signals: Optional[StopSignals] = None  # set by a run that honours SIGTERM / SIGUSR1 / SIGINT
        self.last_outcome: Optional[StepOutcome] = None  # what the last iteration did, for the hooks
        self.storage = EventStorage()
        self.data_wait = TimedBatches(iter(()))  # the batches of the current `train`, timed

    def state_dict(self) -> Dict[str, Any]:
        """The skip counters, which a resumed run continues, and where the next update's data start (epoch, samples
        of its order taken), from which a resumed run's loader starts."""
        state: Dict[str, Any] = {"skipped_updates": self.skipped_updates, "consecutive_skips": self.consecutive_skips}
        sampler = getattr(self.data, "batch_sampler", None)
        if isinstance(sampler, ResumableBatchSampler):
            state["data_position"] = list(sampler.position_at(self.iter + 1))
        return state

    @staticmethod
    def check_state(state: Any) -> None:
        """A `ValueError` unless `state` has the form of `state_dict()`."""
        require_fields(state, {"skipped_updates": int, "consecutive_skips": int, "data_position": list}, "trainer")
        position = state["data_position"]
        if not (len(position) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                           for v in position)):
            raise ValueError(f"the trainer state's data position {position!r} is not [epoch, samples taken]")
        if not 0 <= state["consecutive_skips"] <= state["skipped_updates"] < 2 ** 53:
            raise ValueError("the trainer state's skip counts are not counts")

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the skip counters of `state_dict()` (the data position is the loader's, read by the runner)."""
        self.check_state(state)
        self.skips.set(state["skipped_updates"], state["consecutive_skips"])

    @property
    def skipped_updates(self) -> int:
        """Updates skipped so far (reading it waits for the device)."""
        return int(self.skips.total.item())

    @property
    def consecutive_skips(self) -> int:
        """Updates skipped in a row up to the last one (reading it waits for the device)."""
        return int(self.skips.in_a_row.item())

    def register_hooks(self, hooks: List[Optional[HookBase]]) -> None:
        """Add hooks (None entries are ignored); they run in the order given."""
        for hook in hooks:
            if hook is not None:
                hook.trainer = self
                self.hooks.append(hook)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run updates start_iter .. max_iter - 1."""
        self.start_iter, self.max_iter = start_iter, max_iter
        self.iter = start_iter - 1
        self.storage = EventStorage(start_iter)
        self.data_wait = TimedBatches(iter(self.data))
        self.model.train()
        logger.info("Starting training at iteration %d; the last is %d", start_iter, max_iter - 1)
        for hook in self.hooks:
            hook.before_train()
        try:
            while self.iter + 1 < self.max_iter:  # a hook may move the end closer (`end_at_this_iteration`)
                self.iter += 1
                self.storage.iter = self.iter
                for hook in self.hooks:
                    hook.before_step()
                self.run_step()
                for hook in self.hooks:
                    hook.after_step()
                stop = self.stop_signals.agreed() if self.stop_signals is not None else None
                if stop is not None and self.iter + 1 < self.max_iter:
                    raise Preempted(stop, self.iter + 1)
        except BaseException as error:
            self.failure = error
            raise
        finally:
            for hook in self.hooks:
                hook.after_train()

    def end_at_this_iteration(self) -> None:
        """Make the iteration now running the run's last (early stopping; before the first: none is left): the
        hooks after the caller, and every hook's `after_train`, see a run that has reached its end, so model_final
        is saved and the final evaluation runs as at the end of the schedule."""
        self.max_iter = self.iter + 1

    def run_step(self) -> None:
        """One iteration: the update step, then its losses and the skip counters into the storage (as tensors)."""
        outcome = self.last_outcome = self.update_step(self.data_wait, self.iter)
        self.skips.add(outcome.skipped)
        self.storage.loss_names = tuple(outcome.losses)
        self.storage.put_scalars(loss=outcome.total, skipped_updates=self.skips.total, **outcome.losses)
        readable = self._in_a_row.push(self.iter, self.skips.in_a_row)
        if readable is not None:
            self._check_skips(*readable)

    def _check_skips(self, iteration: int, in_a_row: float) -> None:
        """Say that update `iteration` was skipped, and stop the run after too many in a row."""
        if not in_a_row:
            return
        count = int(in_a_row)
        logger.warning("Update %d skipped for a non-finite loss or gradient (%d in a row)", iteration, count)
        if self.max_consecutive_skips and count >= self.max_consecutive_skips:
            raise NonFiniteError(
                f"{count} updates in a row (iterations {iteration - count + 1} to {iteration}) were skipped for "
                f"non-finite losses or gradients (TRAIN.MAX_CONSECUTIVE_SKIPS = {self.max_consecutive_skips}); the "
                "last good state is saved as model_last_good.pth: lower the lr and --resume")
