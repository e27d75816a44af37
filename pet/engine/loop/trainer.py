"""The training loop: `Trainer` runs the iterations of a run and calls the hooks around each.

What one iteration does (micro-batches, mixed precision, the optimizers' steps, skipping non-finite updates) is
`UpdateStep`'s job; the trainer counts the skipped updates, stops the run after too many in a row, and stops it
between updates when a stop signal arrives (`preemption`).
"""
import logging
from typing import Any, Dict, Iterable, List, Optional, Union

import torch
from torch import nn

from pet.data.sampler import ResumableBatchSampler
from pet.engine.loop.events import EventStorage
from pet.engine.loop.hooks import HookBase
from pet.engine.distributed.preemption import StopSignals
from pet.engine.loop.update_step import LossFunction, StepOutcome, UpdateStep
from pet.errors import NonFiniteError, Preempted
from pet.state_fields import require_fields
from pet.solver.units import SolverUnit

logger = logging.getLogger(__name__)


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
        self.step = UpdateStep(model, loss_fn, self.units, device, accumulation, amp_dtype, grad_scaler)
        self.hooks: List[HookBase] = []
        self.iter = self.start_iter = self.max_iter = 0
        self.skipped_updates = 0
        self.max_consecutive_skips = max_consecutive_skips
        self.consecutive_skips = 0
        self.failure: Optional[BaseException] = None  # why training stopped early, for the hooks' after_train
        self.stop_signals: Optional[StopSignals] = None  # set by a run that honours SIGTERM / SIGUSR1 / SIGINT
        self.last_outcome: Optional[StepOutcome] = None  # what the last iteration did, for the hooks
        self.storage = EventStorage()

    def state_dict(self) -> Dict[str, Any]:
        """The skip counters, which a resumed run continues, and where the next update's data start (epoch, samples
        of its order taken), from which a resumed run's loader starts."""
        state: Dict[str, Any] = {"skipped_updates": self.skipped_updates, "consecutive_skips": self.consecutive_skips}
        sampler = getattr(self.data, "batch_sampler", None)
        if isinstance(sampler, ResumableBatchSampler):
            state["data_position"] = list(sampler.position_at(self.iter + 1))
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the skip counters of `state_dict()` (the data position is the loader's, read by the runner)."""
        require_fields(state, {"skipped_updates": int, "consecutive_skips": int}, "trainer")
        self.skipped_updates = int(state["skipped_updates"])
        self.consecutive_skips = int(state["consecutive_skips"])

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
        self._batches = iter(self.data)
        self.model.train()
        logger.info("Starting training from iteration %d to %d", start_iter, max_iter)
        for hook in self.hooks:
            hook.before_train()
        try:
            for self.iter in range(start_iter, max_iter):
                self.storage.iter = self.iter
                for hook in self.hooks:
                    hook.before_step()
                self.run_step()
                for hook in self.hooks:
                    hook.after_step()
                stop = self.stop_signals.agreed() if self.stop_signals is not None else None
                if stop is not None and self.iter + 1 < max_iter:
                    raise Preempted(stop, self.iter + 1)
        except BaseException as error:
            self.failure = error
            raise
        finally:
            for hook in self.hooks:
                hook.after_train()

    def run_step(self) -> None:
        """One iteration: the update step, then its losses and the skip counters into the storage."""
        outcome = self.last_outcome = self.step(self._batches, self.iter)
        self.skipped_updates += int(outcome.skipped)
        self.consecutive_skips = self.consecutive_skips + 1 if outcome.skipped else 0
        self.storage.loss_names = tuple(outcome.losses)
        self.storage.put_scalars(loss=outcome.total, skipped_updates=self.skipped_updates, **outcome.losses)
        if self.max_consecutive_skips and self.consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteError(
                f"{self.consecutive_skips} updates in a row (iterations {self.iter - self.consecutive_skips + 1} to "
                f"{self.iter}) were skipped for non-finite losses or gradients (TRAIN.MAX_CONSECUTIVE_SKIPS = "
                f"{self.max_consecutive_skips}); the last good state is saved as model_last_good.pth: lower the lr "
                "and --resume")
