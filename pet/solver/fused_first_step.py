"""A guard for the first update of torch's fused SGD with momentum.

On its first step, `torch.optim.SGD(fused=True)` stores momentum buffers made with `torch.empty_like` and lets the
kernel fill them; when the step carries `found_inf` (a GradScaler's overflow, or the non-finite guard of
`pet.solver.gradient_guard`), the kernel skips and the buffers keep uninitialised memory, which every later update reads.
Until the first update that is really taken, this guard reads `found_inf` on the host and, when it is set, removes
the gradients instead, so the step does nothing and no buffer is created: the state is exactly as if the update
never happened. Once an update has been taken the guard does nothing, and later steps stay free of host
synchronisation.
"""
from typing import Any

import torch


class FusedFirstStepGuard:
    """Step pre/post hooks on a fused SGD optimizer, active until its first update that is not skipped."""

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
