"""The training loop: micro-batches with accumulation and mixed precision, one optimizer update per iteration.

One iteration is one optimizer update (the LR schedule's k), whatever the number of micro-batches. Under DDP the
non-last micro-batches run in `no_sync()`, so gradients are all-reduced once per update. With float16, a
GradScaler scales the loss, gradients are unscaled before the optimizer step (and so before clipping), and an
update the scaler skips for inf/NaN gradients is counted. A non-finite loss on any process skips the update on
every process, so the replicas never diverge; parameters and optimizer state stay as they were.
"""
import contextlib
import logging
import math
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from pet.engine.distributed import all_reduce_sum, get_world_size
from pet.engine.events import EventStorage
from pet.engine.hooks import HookBase

logger = logging.getLogger(__name__)

LossFunction = Callable[[nn.Module, Any], Dict[str, torch.Tensor]]


def classification_losses(model: nn.Module, batch: Any) -> Dict[str, torch.Tensor]:
    """Cross-entropy of a classifier on an (images, labels) batch."""
    images, labels = batch
    return {"loss_cls": F.cross_entropy(model(images), labels)}


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
        optimizer: the optimizer (clipping runs inside its step, as a pre-hook).
        device: where batches go.
        accumulation: micro-batches per update.
        amp_dtype: torch.float16 or torch.bfloat16 for autocast; None for full precision.
        grad_scaler: the float16 GradScaler (None otherwise).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFunction, data: Iterable[Any],
                 optimizer: torch.optim.Optimizer, device: torch.device, accumulation: int = 1,
                 amp_dtype: Optional[torch.dtype] = None, grad_scaler: Optional[torch.amp.GradScaler] = None) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.data = data
        self.optimizer = optimizer
        self.device = device
        self.accumulation = accumulation
        self.amp_dtype = amp_dtype
        self.grad_scaler = grad_scaler
        self.hooks: List[HookBase] = []
        self.iter = self.start_iter = self.max_iter = 0
        self.skipped_updates = 0
        self.storage = EventStorage()

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
        finally:
            for hook in self.hooks:
                hook.after_train()

    def run_step(self) -> None:
        """One optimizer update over `accumulation` micro-batches."""
        losses = self._accumulate_gradients()
        # One collective for every loss: the mean over processes, which is non-finite if any process's is.
        names = sorted(losses)
        means = (all_reduce_sum(torch.stack([losses[n] for n in names])) / get_world_size()).tolist()
        total = sum(means)
        if math.isfinite(total):
            skipped = not self._update()
        else:
            logger.warning("Non-finite loss %s at iteration %d: update skipped", total, self.iter)
            skipped = True
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_updates += int(skipped)
        self.storage.put_scalars(loss=total, skipped_updates=self.skipped_updates,
                                 **{name: value for name, value in zip(names, means)})

    def _accumulate_gradients(self) -> Dict[str, torch.Tensor]:
        """Forward and backward every micro-batch of the update; return the mean of each loss."""
        sums: Dict[str, torch.Tensor] = {}
        for micro in range(self.accumulation):
            batch = to_device(next(self._batches), self.device)
            last = micro == self.accumulation - 1
            no_sync = getattr(self.model, "no_sync", None)
            with (no_sync() if no_sync is not None and not last else contextlib.nullcontext()):
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    losses = self.loss_fn(self.model, batch)
                loss = sum(losses.values()) / self.accumulation
                (self.grad_scaler.scale(loss) if self.grad_scaler is not None else loss).backward()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0) + value.detach().float() / self.accumulation
        return sums

    def _update(self) -> bool:
        """Step the optimizer; return whether the update was applied (not skipped for inf/NaN gradients)."""
        clipper = getattr(self.optimizer, "grad_clipper", None)
        clip_skips = clipper.num_skipped if clipper is not None else 0
        if self.grad_scaler is None:
            self.optimizer.step()
            applied = True
        else:
            self.grad_scaler.unscale_(self.optimizer)  # clipping must see true gradients
            scale = self.grad_scaler.get_scale()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
            applied = self.grad_scaler.get_scale() >= scale  # the scale shrinks exactly when it skipped
        return applied and (clipper is None or clipper.num_skipped == clip_skips)
