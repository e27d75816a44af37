"""The gradient guard: a step pre-hook that clips gradients and skips updates whose gradients are not finite, for
every optimizer (with clipping off it is the non-finite check alone).

A non-finite gradient skips the update: parameters and optimizer state (momentum, Adam moments, step counts) stay
untouched. With torch's fused kernels this costs no host synchronisation: the hook hands the kernels its flag as
`found_inf` (see `fused_kernels`), and they skip the update themselves; `full_model` clipping rides along as their
`grad_scale`, so the gradients are read once instead of three times. Other kernels need the answer on the host:
the hook then removes the gradients (`grad = None`) of a bad update. The caller may add a reason of its own to skip
the next update (`expect_step`: a non-finite loss), on the device too. Each step's verdict stays on the device
(`last_flag`); skips are counted in `num_skipped`.
"""
import logging
import math
from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor

from pet.solver.optimizers.clip import clip_, clip_coefficient, global_norm, is_non_finite
from pet.solver.optimizers.fused_kernels import StepAttributes, is_fused
from pet.solver.optimizers.shards import Group, local_shards

logger = logging.getLogger(__name__)

CLIP_TYPES = ("full_model", "norm", "value", "none")


class SkipCounter:
    """Updates skipped so far: counted on the host where the check ran there, summed on the device where fused
    kernels skipped by themselves (read on demand: reading synchronises)."""

    def __init__(self) -> None:
        self._host = 0
        self._device: Optional[Tensor] = None

    def add_host_skip(self) -> None:
        """One update skipped by the host."""
        self._host += 1

    def add_device_flag(self, flag: Tensor) -> None:
        """A step's non-finite flag (0 or 1) that the fused kernels act on."""
        self._device = flag if self._device is None else self._device + flag

    @property
    def total(self) -> int:
        """Every skip so far."""
        return self._host + (int(self._device.item()) if self._device is not None else 0)


class GradientGuard:
    """A step pre-hook that clips the gradients of all the optimizer's parameters before each update, and skips
    the update when they are not finite (or when `expect_step` said so).

    Args:
        clip_type: `full_model`, `norm`, `value`, or `none` (the non-finite check alone).
        clip_value: the largest norm (`full_model`, `norm`) or element magnitude (`value`).
        norm_type: the p of the p-norm; `inf` for the largest magnitude.

    Example:
        >>> guard = add_gradient_guard(optimizer, "full_model", 1.0)
        >>> loss.backward(); optimizer.step()  # clipped first; skipped if a gradient is inf or NaN
        >>> guard.num_skipped
        0
    """

    def __init__(self, clip_type: str, clip_value: float = math.inf, norm_type: float = 2.0) -> None:
        if clip_type not in CLIP_TYPES:
            raise ValueError(f"clip_type must be one of {', '.join(CLIP_TYPES)}; got {clip_type!r}")
        self.clip_type = clip_type
        self.clip_value = float(clip_value)
        self.norm_type = float(norm_type)
        self.skips = SkipCounter()
        self._attributes = StepAttributes()
        # The global norm of the true gradients before clipping, of the last update, on their device (read it
        # only where it is logged: reading synchronises); None where the clip type computes no norm.
        self.last_norm: Optional[Tensor] = None
        # The last step's verdict on the device: 1.0 when it skipped the update, else 0.0.
        self.last_flag: Optional[Tensor] = None
        self._extra: Optional[Tensor] = None  # a reason of the caller's to skip the next update (`expect_step`)
        self._shared_norm: Optional[Tensor] = None  # the global norm over several optimizers' gradients
        self._checked = False  # whether the caller checked these gradients already

    def expect_step(self, skip_if: Optional[Tensor] = None, shared_norm: Optional[Tensor] = None,
                    checked: bool = False) -> None:
        """Before a step: forget the last verdict (a step that never reaches the hook, one a GradScaler skipped,
        leaves `last_flag` None), and skip the coming update also when `skip_if` (a 0-dim 0/1 tensor: a non-finite
        loss, or the check of several optimizers' gradients together) is 1, decided where the gradients' own check
        is: on the device for fused kernels. `shared_norm`: the global norm of the true gradients of every optimizer
        stepping together (`full_model` clipping of a routed model clips by it, as one optimizer would); `checked`:
        `skip_if` covers these gradients, so the check alone need not read them again."""
        self.last_flag = None
        self._extra, self._shared_norm, self._checked = skip_if, shared_norm, checked

    @property
    def num_skipped(self) -> int:
        """Updates skipped for non-finite gradients so far (reading it synchronises)."""
        return self.skips.total

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        extra, self._extra = self._extra, None
        shared, checked, self._shared_norm, self._checked = self._shared_norm, self._checked, None, False
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            self.last_flag = extra
            return
        grads, group = local_shards([p.grad for p in params])  # FSDP: this process's shards, reduced over group
        if is_fused(optimizer):
            self._before_fused_step(optimizer, grads, group, extra, shared, checked)
        else:
            self._before_host_step(params, grads, group, extra, shared, checked)

    def _clip(self, grads: List[Tensor], group: Group, shared: Optional[Tensor],
              checked: bool) -> Tuple[Tensor, Optional[Tensor]]:
        """`clip_`, by the shared global norm where one is given, and without a second read of gradients the
        caller checked already."""
        if shared is not None and self.clip_type == "full_model":
            torch._foreach_mul_(grads, clip_coefficient(shared, self.clip_value))
            return is_non_finite(shared), shared
        if checked and self.clip_type == "none":
            return torch.zeros((), dtype=torch.float32, device=grads[0].device), None
        return clip_(grads, self.clip_type, self.clip_value, self.norm_type, group)

    def _before_host_step(self, params: List[Tensor], grads: List[Tensor], group: Group,
                          extra: Optional[Tensor], shared: Optional[Tensor], checked: bool) -> None:
        flag, self.last_norm = self._clip(grads, group, shared, checked)
        if extra is not None:
            flag = torch.maximum(flag, extra.to(flag.device))
        self.last_flag = flag
        if flag.item():  # the update must not run
            self.skips.add_host_skip()
            for p in params:
                p.grad = None
            logger.warning("Non-finite gradient: update skipped (%d skipped so far)", self.num_skipped)

    def _before_fused_step(self, optimizer: torch.optim.Optimizer, grads: List[Tensor], group: Group,
                           extra: Optional[Tensor], shared: Optional[Tensor], checked: bool) -> None:
        attributes = self._attributes
        attributes.save(optimizer)
        scale = attributes.scaler_scale  # set when a GradScaler hands over scaled gradients
        if self.clip_type == "full_model":
            total = shared if shared is not None else global_norm(grads, self.norm_type, group)
            self.last_norm = total if scale is None or shared is not None else total / scale
            attributes.set_clip_coefficient(optimizer, clip_coefficient(self.last_norm, self.clip_value))
            flag = is_non_finite(total)
        else:
            if scale is not None and self.clip_type != "none":
                attributes.unscale(optimizer, grads)  # per-tensor and value limits apply to true gradients
            flag, self.last_norm = self._clip(grads, group, None, checked)
        if extra is not None:
            flag = torch.maximum(flag, extra.to(flag.device))
        self.last_flag = flag
        self.skips.add_device_flag(flag)
        attributes.set_found_inf(optimizer, flag)

    def restore_step_attributes(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Step post-hook: leave `grad_scale` / `found_inf` as they were before the step."""
        self._attributes.restore(optimizer)


def add_gradient_guard(optimizer: torch.optim.Optimizer, clip_type: str, clip_value: float = math.inf,
                       norm_type: float = 2.0) -> GradientGuard:
    """Register a `GradientGuard` on `optimizer` and return it (keep it: its skip count and last norm)."""
    guard = GradientGuard(clip_type, clip_value, norm_type)
    optimizer.register_step_pre_hook(guard)
    optimizer.register_step_post_hook(guard.restore_step_attributes)
    return guard
