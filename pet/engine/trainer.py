"""The training loop: micro-batches with accumulation and mixed precision, one update per iteration.

One iteration is one optimizer update (the LR schedule's k), whatever the number of micro-batches. Under DDP the
non-last micro-batches run in `no_sync()`, so gradients are all-reduced once per update. With float16, a
GradScaler scales the loss, gradients are unscaled before the optimizer step (and so before clipping), and an
update the scaler skips for inf/NaN gradients is counted. A non-finite loss on any process skips the update on
every process, so the replicas never diverge; parameters and optimizer state stay as they were.

Several optimizers (solver units) may share the loop: each gets the gradient of its own losses on its own
parameters, and steps after every `step_interval` iterations with the gradients averaged over them.
"""
import contextlib
import logging
import math
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from pet.engine.distributed import all_reduce_sum, get_world_size
from pet.engine.errors import NonFiniteError
from pet.config.errors import ConfigError
from pet.engine.events import EventStorage
from pet.engine.hooks import HookBase
from pet.solver.units import SolverUnit

logger = logging.getLogger(__name__)

LossFunction = Callable[[nn.Module, Any], Dict[str, torch.Tensor]]


def classification_losses(model: nn.Module, batch: Any) -> Dict[str, torch.Tensor]:
    """Cross-entropy of a classifier on an (images, labels) batch."""
    images, labels = batch
    return {"loss_cls": F.cross_entropy(model(images), labels)}


def model_losses(model: nn.Module, batch: Any) -> Dict[str, torch.Tensor]:
    """The losses a model computes itself, as torchvision's detectors do in training mode: `model(*batch)`
    must return a dict of scalar losses (their sum is minimised, each one is logged)."""
    losses = model(*batch)
    if not isinstance(losses, dict) or not all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in losses.values()):
        raise TypeError(f"{type(getattr(model, 'module', model)).__name__} returned {type(losses).__name__} in "
                        "training mode; the trainer needs a dict of scalar loss tensors")
    return losses


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch


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
        self.loss_fn = loss_fn
        self.data = data
        self.units = [SolverUnit("", units)] if isinstance(units, torch.optim.Optimizer) else list(units)
        self.device = device
        self.accumulation = accumulation
        self.amp_dtype = amp_dtype
        self.grad_scaler = grad_scaler
        self.hooks: List[HookBase] = []
        self.iter = self.start_iter = self.max_iter = 0
        self.skipped_updates = 0
        self.max_consecutive_skips = max_consecutive_skips
        self.consecutive_skips = 0
        self.failure: Optional[BaseException] = None  # why training stopped early, for the hooks' after_train
        self._clip_counts: Dict[str, int] = {}  # each clipper's skip count at the last look
        self.storage = EventStorage()

    def state_dict(self) -> Dict[str, int]:
        """The skip counters, which a resumed run continues."""
        return {"skipped_updates": self.skipped_updates, "consecutive_skips": self.consecutive_skips}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Continue the skip counters of `state_dict()`."""
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
        self._targets: Optional[List[Tuple[Optional[Tuple[str, ...]], Optional[list]]]] = None
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
        except BaseException as error:
            self.failure = error
            raise
        finally:
            for hook in self.hooks:
                hook.after_train()

    def run_step(self) -> None:
        """One iteration: gradients over `accumulation` micro-batches, then the due optimizers step."""
        due = [unit for unit in self.units if unit.is_due(self.iter)]
        losses = self._accumulate_gradients()
        names = sorted(losses)
        if get_world_size() > 1:  # one collective for every loss: the mean, non-finite if any process's is
            means = (all_reduce_sum(torch.stack([losses[n] for n in names])) / get_world_size()).tolist()
        else:
            means = [losses[n].item() for n in names]
        total = sum(means)
        if math.isfinite(total):
            skipped = not self._update(due)
        else:
            logger.warning("Non-finite loss %s at iteration %d: update skipped", total, self.iter)
            skipped, due = True, self.units  # every gradient since the last update may hold the NaN
        for unit in due:
            unit.optimizer.zero_grad(set_to_none=True)
        self.skipped_updates += int(skipped)
        self.consecutive_skips = self.consecutive_skips + 1 if skipped else 0
        self.storage.loss_names = tuple(names)
        self.storage.put_scalars(loss=total, skipped_updates=self.skipped_updates,
                                 **{name: value for name, value in zip(names, means)})
        if self.max_consecutive_skips and self.consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteError(
                f"{self.consecutive_skips} updates in a row (iterations {self.iter - self.consecutive_skips + 1} to "
                f"{self.iter}) were skipped for non-finite losses or gradients (TRAIN.MAX_CONSECUTIVE_SKIPS = "
                f"{self.max_consecutive_skips}); the last good state is saved as model_last_good.pth: lower the lr "
                "and --resume")

    def _loss_targets(self, loss_names: Sequence[str]) -> List[Tuple[Optional[Tuple[str, ...]], Optional[list]]]:
        """(losses to sum or None for all, parameters or None for all) per backward pass of a micro-batch."""
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

    def _accumulate_gradients(self) -> Dict[str, torch.Tensor]:
        """Forward and backward every micro-batch of the update; return the mean of each loss."""
        if self.accumulation == 1:  # the common case, without the bookkeeping of several micro-batches
            losses = self._forward_backward(contextlib.nullcontext())
            return {name: value.detach() for name, value in losses.items()}
        sums: Dict[str, torch.Tensor] = {}
        no_sync = getattr(self.model, "no_sync", None)
        for micro in range(self.accumulation):
            last = micro == self.accumulation - 1
            losses = self._forward_backward(no_sync() if no_sync is not None and not last else contextlib.nullcontext())
            for name, value in losses.items():
                sums[name] = sums.get(name, 0) + value.detach().float() / self.accumulation
        return sums

    def _forward_backward(self, sync_context: Any) -> Dict[str, torch.Tensor]:
        """One micro-batch: its losses, and their gradients added to each optimizer's parameters."""
        batch = to_device(next(self._batches), self.device)
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
        if self._clipping_skipped(due):
            logger.warning("Non-finite gradient norm at iteration %d: update skipped", self.iter)
            applied = False
        return applied

    def _clipping_skipped(self, due: List[SolverUnit]) -> bool:
        """Whether a clipping hook skipped one of these updates (its counter moved since the last look)."""
        skipped = False
        for unit in due:
            clipper = getattr(unit.optimizer, "grad_clipper", None)
            if clipper is not None:
                count = clipper.num_skipped
                skipped |= count != self._clip_counts.get(unit.name, 0)
                self._clip_counts[unit.name] = count
        return skipped
