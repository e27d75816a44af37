"""The step protocol of torch's fused kernels: `grad_scale` and `found_inf` attributes on the optimizer.

torch's fused SGD / Adam / AdamW / Adagrad read two optional tensors from the optimizer at each step: every
gradient is divided by `grad_scale` as it is read, and the whole update is skipped on the device when `found_inf`
is 1. `GradScaler` sets both for fused optimizers instead of unscaling (then deletes them after the step). A hook
that clips or checks gradients before such a step rides the same protocol: it folds a full-model clipping factor
into `grad_scale`, so the gradients are read once, and hands its non-finite flag over as `found_inf`, so a bad
update costs no host synchronisation. `StepAttributes` keeps what a GradScaler had set and puts it back after the
step, for the scaler to delete. `FusedFirstStepGuard` covers the one case the protocol gets wrong: a fused SGD's
first update skipped.
"""
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

# What torch's fused kernels read from the optimizer at each step.
ATTRIBUTES = ("grad_scale", "found_inf")


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every param group of `optimizer` steps with torch's fused kernels."""
    return all(group.get("fused") for group in optimizer.param_groups)


class StepAttributes:
    """The `grad_scale` / `found_inf` of one step: what a GradScaler set before it, and what the hook sets."""

    def __init__(self) -> None:
        self._saved: Dict[str, Any] = {}

    def save(self, optimizer: torch.optim.Optimizer) -> None:
        """Remember the attributes as the step begins (absent, or a GradScaler's)."""
        self._saved = {name: getattr(optimizer, name) for name in ATTRIBUTES if hasattr(optimizer, name)}

    @property
    def scaler_scale(self) -> Optional[Tensor]:
        """The scale of a GradScaler that handed the step scaled gradients (None: they are true gradients)."""
        return self._saved.get("grad_scale")

    def unscale(self, optimizer: torch.optim.Optimizer, grads: List[Tensor]) -> None:
        """Divide `grads` by the GradScaler's scale in place, as `GradScaler.unscale_` would (with its float32
        reciprocal), and tell the kernels that they are now true gradients."""
        inverse = self.scaler_scale.double().reciprocal().float()
        torch._foreach_mul_(grads, inverse.to(grads[0].device))
        optimizer.grad_scale = None

    def set_clip_coefficient(self, optimizer: torch.optim.Optimizer, coefficient: Tensor) -> None:
        """Have the kernels multiply each gradient by `coefficient` (after the GradScaler's unscaling, if any)."""
        scale = self.scaler_scale if self.scaler_scale is not None else 1.0
        optimizer.grad_scale = (scale / coefficient).float()  # the kernels take it in float32

    def set_found_inf(self, optimizer: torch.optim.Optimizer, flag: Tensor) -> None:
        """Have the kernels skip the update when `flag` (or the GradScaler's own verdict) is 1."""
        scaler_flag = self._saved.get("found_inf")
        if scaler_flag is not None:
            flag = torch.maximum(flag, scaler_flag.to(flag.device))
        optimizer.found_inf = flag

    def restore(self, optimizer: torch.optim.Optimizer, args: Any = None, kwargs: Any = None) -> None:
        """Step post-hook: leave the attributes as they were before the step (absent, or a GradScaler's)."""
        for name in ATTRIBUTES:
            if name in self._saved:
                setattr(optimizer, name, self._saved[name])
            elif hasattr(optimizer, name):
                delattr(optimizer, name)
        self._saved = {}


class FusedFirstStepGuard:
    """Step pre/post hooks on a fused SGD optimizer with momentum, active until its first update that is taken.

    On its first step, `torch.optim.SGD(fused=True)` stores momentum buffers made with `torch.empty_like` and lets
    the kernel fill them; when that step carries `found_inf` (a GradScaler's overflow, or the gradient guard's
    flag), the kernel skips and the buffers keep uninitialised memory, which every later update reads. Until the
    first update that is really taken, this guard reads `found_inf` on the host and, when it is set, removes the
    gradients instead, so the step does nothing and no buffer is created. Once an update has been taken the guard
    does nothing, and later steps stay free of host synchronisation.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.active = True
        self._skipping = False
        # Registered after any clipping hook, so that the flag it sees is the final one.
        optimizer.register_step_pre_hook(self.before_step)
        optimizer.register_step_post_hook(self.after_step)

    def before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self.active:
            return
        found_inf = getattr(optimizer, "found_inf", None)
        self._skipping = found_inf is not None and bool(found_inf.item())  # a host sync, until the first update
        if self._skipping:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None

    def after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # The hooks stay registered (torch iterates over them while calling them) but do nothing from now on.
        self.active = self.active and self._skipping


def needs_first_step_guard(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer` is a fused SGD, whose first skipped step would leave garbage momentum buffers."""
    return isinstance(optimizer, torch.optim.SGD) and any(group.get("fused") for group in optimizer.param_groups)
