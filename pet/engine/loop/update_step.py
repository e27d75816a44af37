"""One training iteration: forward and backward over the micro-batches of one update, then the due optimizers step.

One iteration is one optimizer update (the LR schedule's k), whatever the number of micro-batches. Under DDP the
non-last micro-batches run in `no_sync()`, so gradients are all-reduced once per update. With float16, a
GradScaler scales the loss, gradients are unscaled before the optimizer step (and so before clipping), and an
update the scaler skips for inf/NaN gradients counts as skipped. A non-finite loss on any process skips the
update on every process, so the replicas never diverge; parameters, optimizer state and the model's buffers
(batch-norm statistics, which the forward pass of the skipped update already moved) stay as they were.

Several optimizers (solver units) may share a step: each gets the gradient of its own losses on its own
parameters, and steps after every `step_interval` iterations with the gradients averaged over them.

Nothing here waits for the device: the losses, the non-finite loss check and the verdict of each update stay on
the device (`StepOutcome`), the check reaches the optimizers through their gradient guards (into torch's fused
kernels as `found_inf`), and the buffers of a skipped update are put back by a device-side select. The host reads
them only where a writer or a hook asks (`pet.engine.loop.trainer`). Three settings still read on the host, each
only where it is configured: an optimizer without a guard (NONFINITE.CHECK_GRADIENTS off and no clipping), an
optimizer not due at a non-finite loss (STEP_INTERVAL > 1), and a guard on kernels that are not fused (torch's
for-loop and foreach kernels cannot skip by themselves).
"""
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from pet.engine.distributed.process_group import all_reduce_sum, get_world_size
from pet.errors import ConfigError
from pet.solver.optimizers.clip import global_norm, is_non_finite, non_finite_flag
from pet.solver.optimizers.shards import local_shards
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


def reads_are_free(device: torch.device) -> bool:
    """Whether reading a tensor of `device` on the host costs nothing (the CPU: no device to wait for)."""
    return device.type == "cpu"


@dataclass
class StepOutcome:
    """What one iteration did, on the device: the mean of each loss over processes and micro-batches, and 1.0 when
    its update was skipped for a non-finite loss or gradient (else 0.0). Reading a value waits for the device."""

    losses: Dict[str, torch.Tensor]
    skipped: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        """The sum of the losses (what is minimised)."""
        return torch.stack(list(self.losses.values())).sum()


class BufferGuard:
    """Puts the model's buffers back after a skipped update: the forward pass of the skipped batches has already
    moved them (batch-norm statistics and counters). Only the buffers the first forward pass changed are kept, so
    fixed ones (frozen batch-norm statistics, anchors) cost nothing."""

    def __init__(self, model: nn.Module) -> None:
        self.buffers = [b for b in model.buffers() if b.numel()]
        self.saved = [b.detach().clone() for b in self.buffers]
        self._narrowed = False

    def save(self) -> None:
        """Before the forward passes: keep a copy of every buffer that moves."""
        if self.buffers:
            torch._foreach_copy_(self.saved, self.buffers)

    def restore_if(self, skipped: torch.Tensor) -> None:
        """After the update: put the saved buffers back where `skipped` is 1."""
        if not self._narrowed:  # the first update shows which buffers the forward pass moves (a one-time read)
            moved = [i for i, (b, s) in enumerate(zip(self.buffers, self.saved)) if not torch.equal(b, s)]
            self._narrowed = True
        else:
            moved = None
        if reads_are_free(skipped.device):  # copy only when an update was skipped
            if skipped.item() and self.buffers:
                torch._foreach_copy_(self.buffers, self.saved)
        else:
            back = skipped.bool()
            for buffer, saved in zip(self.buffers, self.saved):
                buffer.copy_(torch.where(back, saved, buffer))
        if moved is not None:
            self.buffers = [self.buffers[i] for i in moved]
            self.saved = [self.saved[i] for i in moved]


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
        self.buffers = BufferGuard(model)

    def __call__(self, batches: Iterator[Any], iteration: int) -> StepOutcome:
        """Run iteration `iteration` on the next micro-batches of `batches`."""
        due = [unit for unit in self.units if unit.is_due(iteration)]
        self.buffers.save()
        losses = self._accumulate_gradients(batches)
        names = sorted(losses)
        means = torch.stack([losses[name].float() for name in names])
        if get_world_size() > 1:  # one collective for every loss: the mean, non-finite if any process's is
            means = all_reduce_sum(means) / get_world_size()
        loss_flag = is_non_finite(means)
        skipped = self.apply(due, loss_flag)
        for unit in due:
            unit.optimizer.zero_grad(set_to_none=True)
        waiting = [unit for unit in self.units if unit not in due]
        if waiting and loss_flag.item():  # their gradients since the last update may hold the NaN: drop them
            for unit in waiting:
                unit.optimizer.zero_grad(set_to_none=True)
        self.buffers.restore_if(skipped)  # as if the skipped batches were never seen
        return StepOutcome(dict(zip(names, means.unbind())), skipped)

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

    def apply(self, due: List[SolverUnit], loss_flag: torch.Tensor) -> torch.Tensor:
        """Step the due optimizers unless `loss_flag` is set; return the update's verdict on the device: 1.0 when any
        of them skipped (a non-finite loss, a guard's non-finite gradient, a GradScaler's overflow)."""
        for unit in due:
            if unit.step_interval > 1:  # the mean, not the sum, of the gradients since its last step
                grads = [p.grad for p in unit.params() if p.grad is not None]
                torch._foreach_mul_(grads, 1.0 / unit.step_interval)
        unguarded_skip = any(unit.guard is None for unit in due) and bool(loss_flag.item())
        stepping = [unit for unit in due if unit.guard is not None or not unguarded_skip]
        scaler = self.grad_scaler
        if scaler is not None:
            before = scaler._scale.clone()  # its scale shrinks exactly when it skips (read without a host sync)
            for unit in stepping:
                scaler.unscale_(unit.optimizer)  # clipping must see true gradients
        self._arm_guards(stepping, loss_flag)
        for unit in stepping:
            scaler.step(unit.optimizer) if scaler is not None else unit.optimizer.step()
        flags = [loss_flag]
        if scaler is not None:
            if stepping:
                scaler.update()
            flags.append((scaler._scale < before).float())
        flags += [unit.guard.last_flag for unit in stepping
                  if unit.guard is not None and unit.guard.last_flag is not None]
        return torch.stack([flag.to(loss_flag.device) for flag in flags]).amax()

    def _arm_guards(self, stepping: List[SolverUnit], loss_flag: torch.Tensor) -> None:
        """Tell every guard about the loss. Optimizers that step together on one backward pass (routed parameters)
        are guarded as one: a non-finite gradient anywhere skips all of them, and `full_model` clipping clips by
        the norm of all their gradients, as a single optimizer over the whole model would."""
        together = [unit for unit in stepping if unit.guard is not None]
        if len(together) < 2 or any(unit.losses for unit in together):
            for unit in together:
                unit.guard.expect_step(skip_if=loss_flag)
            return
        guard = together[0].guard
        grads, group = local_shards([p.grad for unit in together for p in unit.params() if p.grad is not None])
        if not grads:
            return
        settings = {(unit.guard.clip_type, unit.guard.clip_value, unit.guard.norm_type) for unit in together}
        if guard.clip_type == "full_model" and len(settings) == 1:
            total = global_norm(grads, guard.norm_type, group)
            flag, shared = torch.maximum(loss_flag, is_non_finite(total).to(loss_flag.device)), total
        else:
            flag, shared = torch.maximum(loss_flag, non_finite_flag(grads, group).to(loss_flag.device)), None
        for unit in together:
            unit.guard.expect_step(skip_if=flag, shared_norm=shared, checked=True)
