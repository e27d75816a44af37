"""One training iteration: forward and backward over the micro-batches of one update, then the due optimizers step.

One iteration is one optimizer update (the LR schedule's k), whatever the number of micro-batches. Under DDP the
non-last micro-batches run in `no_sync()`, so gradients are all-reduced once per update. With float16, a
GradScaler scales the loss, gradients are unscaled before the optimizer step (and so before clipping), and an
update the scaler skips for inf/NaN gradients counts as skipped. A non-finite loss on any process skips the
update on every process, so the replicas never diverge; parameters, optimizer state and the model's buffers
(batch-norm statistics, which the forward pass of the skipped update already moved) stay as they were.

Several optimizers (solver units) may share a step: each gets the gradient of its own losses on its own
parameters, and steps after every `step_interval` iterations with the gradients averaged over them.
"""
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from pet.engine.distributed.process_group import all_reduce_sum, get_world_size
from pet.errors import ConfigError
from pet.solver.units import SolverUnit

logger = logging.getLogger(__name__)

LossFunction = Callable[[nn.Module, Any], Dict[str, torch.Tensor]]
# (names of the losses to sum, or None for all; parameters to differentiate, or None for all) per backward pass.
Target = Tuple[Optional[Tuple[str, ...]], Optional[list]]


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch


@dataclass
class StepOutcome:
    """What one iteration did: the mean of each loss over processes and micro-batches, and whether its update
    was skipped for a non-finite loss or gradient."""

    losses: Dict[str, float]
    skipped: bool

    @property
    def total(self) -> float:
        """The sum of the losses (what is minimised)."""
        return sum(self.losses.values())


class UpdateStep:
    """Computes one update from the next micro-batches of an iterator.

    Args:
        model: the module to train (DDP-wrapped when distributed).
        loss_fn: (model, batch) -> dict of losses; their sum is minimised.
        units: the optimizers (clipping runs inside each step, as a pre-hook).
        device: where batches go.
        accumulation: micro-batches per update.
        amp_dtype: torch.float16 or torch.bfloat16 for autocast; None for full precision.
        grad_scaler: the float16 GradScaler (None otherwise).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFunction, units: List[SolverUnit], device: torch.device,
                 accumulation: int = 1, amp_dtype: Optional[torch.dtype] = None,
                 grad_scaler: Optional[torch.amp.GradScaler] = None) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.units = units
        self.device = device
        self.accumulation = accumulation
        self.amp_dtype = amp_dtype
        self.grad_scaler = grad_scaler
        self._targets: Optional[List[Target]] = None
        self._clip_counts: Dict[str, int] = {}  # each clipper's skip count at the last look
        # Batch-norm statistics move in the forward pass: a skipped update puts them back (see `_restore_buffers`).
        self._buffers = [b for b in model.buffers() if b.numel()]
        self._saved_buffers = [b.detach().clone() for b in self._buffers]

    def __call__(self, batches: Iterator[Any], iteration: int) -> StepOutcome:
        """Run iteration `iteration` on the next micro-batches of `batches`."""
        due = [unit for unit in self.units if unit.is_due(iteration)]
        if self._buffers:
            torch._foreach_copy_(self._saved_buffers, self._buffers)
        losses = self._accumulate_gradients(batches)
        names = sorted(losses)
        if get_world_size() > 1:  # one collective for every loss: the mean, non-finite if any process's is
            means = (all_reduce_sum(torch.stack([losses[n] for n in names])) / get_world_size()).tolist()
        else:
            means = [losses[n].item() for n in names]
        outcome = StepOutcome(dict(zip(names, means)), skipped=False)
        if math.isfinite(outcome.total):
            outcome.skipped = not self._update(due)
            if outcome.skipped:
                logger.warning("Non-finite gradient at iteration %d: update skipped", iteration)
        else:
            logger.warning("Non-finite loss %s at iteration %d: update skipped", outcome.total, iteration)
            outcome.skipped, due = True, self.units  # every gradient since the last update may hold the NaN
        for unit in due:
            unit.optimizer.zero_grad(set_to_none=True)
        if outcome.skipped and self._buffers:
            torch._foreach_copy_(self._buffers, self._saved_buffers)  # as if the skipped batches were never seen
        return outcome

    def _loss_targets(self, loss_names: Sequence[str]) -> List[Target]:
        """The backward passes of a micro-batch: one per set of losses the optimizers minimise."""
        if all(not unit.losses for unit in self.units):
            return [(None, None)]  # one backward of the total loss reaches every optimizer's parameters
        targets: Dict[Tuple[str, ...], list] = {}
        for unit in self.units:
            wanted = unit.losses or tuple(loss_names)
            missing = [name for name in wanted if name not in loss_names]
            if missing:
                raise ConfigError(f"SOLVER.OPTIMIZERS.{unit.name}.LOSSES names {missing}, but the model's losses "
                                  f"are {sorted(loss_names)}")
            targets.setdefault(tuple(wanted), []).extend(unit.params())
        return [(names, params) for names, params in targets.items()]

    def _accumulate_gradients(self, batches: Iterator[Any]) -> Dict[str, torch.Tensor]:
        """Forward and backward every micro-batch of the update; return the mean of each loss."""
        if self.accumulation == 1:  # the common case, without the bookkeeping of several micro-batches
            losses = self._forward_backward(batches, contextlib.nullcontext())
            return {name: value.detach() for name, value in losses.items()}
        sums: Dict[str, torch.Tensor] = {}
        no_sync = getattr(self.model, "no_sync", None)
        for micro in range(self.accumulation):
            last = micro == self.accumulation - 1
            context = no_sync() if no_sync is not None and not last else contextlib.nullcontext()
            for name, value in self._forward_backward(batches, context).items():
                sums[name] = sums.get(name, 0) + value.detach().float() / self.accumulation
        return sums

    def _forward_backward(self, batches: Iterator[Any], sync_context: Any) -> Dict[str, torch.Tensor]:
        """One micro-batch: its losses, and their gradients added to each optimizer's parameters."""
        batch = to_device(next(batches), self.device)
        with sync_context:
            if self.amp_dtype is None:
                losses = self.loss_fn(self.model, batch)
            else:
                with torch.autocast(self.device.type, dtype=self.amp_dtype):
                    losses = self.loss_fn(self.model, batch)
            if self._targets is None:
                self._targets = self._loss_targets(list(losses))
            for index, (names, params) in enumerate(self._targets):
                parts = [losses[n] for n in names] if names else list(losses.values())
                loss = parts[0] if len(parts) == 1 else sum(parts)
                if self.accumulation > 1:
                    loss = loss / self.accumulation
                if self.grad_scaler is not None:
                    loss = self.grad_scaler.scale(loss)
                loss.backward(inputs=params, retain_graph=index < len(self._targets) - 1)
        return losses

    def _update(self, due: List[SolverUnit]) -> bool:
        """Step the due optimizers; return whether every update was applied (none skipped for inf/NaN)."""
        for unit in due:
            if unit.step_interval > 1:  # the mean, not the sum, of the gradients since its last step
                grads = [p.grad for p in unit.params() if p.grad is not None]
                torch._foreach_mul_(grads, 1.0 / unit.step_interval)
        if self.grad_scaler is None:
            for unit in due:
                unit.optimizer.step()
            applied = True
        else:
            scale = self.grad_scaler.get_scale()
            for unit in due:
                self.grad_scaler.unscale_(unit.optimizer)  # clipping must see true gradients
                self.grad_scaler.step(unit.optimizer)
            if due:
                self.grad_scaler.update()
            applied = self.grad_scaler.get_scale() >= scale  # the scale shrinks exactly when it skipped
        return self._guards_took_every_update(due) and applied

    def _guards_took_every_update(self, due: List[SolverUnit]) -> bool:
        """Whether no gradient guard skipped one of these updates (its counter did not move since the last look)."""
        taken = True
        for unit in due:
            clipper = getattr(unit.optimizer, "grad_clipper", None)
            if clipper is not None:
                count = clipper.num_skipped
                taken &= count == self._clip_counts.get(unit.name, 0)
                self._clip_counts[unit.name] = count
        return taken
