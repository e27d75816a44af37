"""Gradient clipping as an optimizer step pre-hook, for every optimizer type.

- `full_model`: one global norm over all gradients, as `torch.nn.utils.clip_grad_norm_`.
- `norm`: each gradient clipped to its own norm; all norms come from one `torch._foreach_norm` call, and the
  result equals a loop of per-tensor `clip_grad_norm_`.
- `value`: every element clamped to [-CLIP_VALUE, CLIP_VALUE], as `torch.nn.utils.clip_grad_value_`.
- `none`: no clipping, only the non-finite check below (NONFINITE.CHECK_GRADIENTS with clipping off).

With torch's fused kernels, `full_model` clipping costs one pass over the gradients instead of three: the hook
computes the norm and hands the scale to the kernel as `grad_scale`, the way `GradScaler` unscales, so the kernel
scales each gradient as it reads it (and writes the clipped gradient back, as in-place clipping would).

A non-finite gradient norm skips the update, parameters and optimizer state (momentum, Adam moments, step counts)
untouched. With fused kernels this costs no host synchronisation: the hook hands the kernels a `found_inf` flag on
the device, as `GradScaler` does, and they skip the update themselves. Other implementations need the answer on
the host: the hook then removes the gradients (`grad = None`) of a bad update. Skips are counted in
`GradientClipper.num_skipped` (reading it synchronises).
"""
import logging
import math
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

# Same guard as torch's clip_grad_norm_, so `norm` matches a loop of it exactly.
_EPS = 1e-6
# What torch's fused kernels read from the optimizer at each step (GradScaler sets them too).
_STEP_ATTRIBUTES = ("grad_scale", "found_inf")


def norm_dtype(grads: List[Tensor]) -> Optional[torch.dtype]:
    """The dtype norms are accumulated in: float32 for half-precision gradients (their own dtype loses digits,
    and torch's fused kernels take `grad_scale` / `found_inf` in float32), else the gradients' own."""
    return torch.float32 if any(g.dtype in (torch.float16, torch.bfloat16) for g in grads) else None


def tensor_norms(grads: List[Tensor], norm_type: float) -> Tensor:
    """The p-norm of each of `grads`, stacked, from one `torch._foreach_norm` call."""
    return torch.stack(torch._foreach_norm(grads, norm_type, dtype=norm_dtype(grads)))


def global_norm(grads: List[Tensor], norm_type: float) -> Tensor:
    """The p-norm of all `grads` together."""
    return torch.linalg.vector_norm(tensor_norms(grads, norm_type), norm_type)


def clip_full_model_(grads: List[Tensor], max_norm: float, norm_type: float) -> Tensor:
    """Scale all `grads` in place so that their global norm is at most `max_norm`; return the norm before."""
    total = global_norm(grads, norm_type)
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + _EPS), max=1.0))
    return total


def clip_per_tensor_(grads: List[Tensor], max_norm: float, norm_type: float) -> Tensor:
    """Scale each of `grads` in place so that its own norm is at most `max_norm`; return the largest norm."""
    norms = tensor_norms(grads, norm_type)
    scales = torch.clamp(max_norm / (norms + _EPS), max=1.0)
    torch._foreach_mul_(grads, list(scales.unbind(0)))
    return norms.max()


def clip_value_(grads: List[Tensor], clip_value: float) -> Tensor:
    """Clamp every element of `grads` to [-clip_value, clip_value]; return the largest |element| before."""
    largest = tensor_norms(grads, math.inf).max()
    torch._foreach_clamp_min_(grads, -clip_value)
    torch._foreach_clamp_max_(grads, clip_value)
    return largest


class GradientClipper:
    """A step pre-hook that clips the gradients of all the optimizer's parameters before each update.

    Args:
        clip_type: `full_model`, `norm`, `value`, or `none` (the non-finite check alone).
        clip_value: the largest norm (`full_model`, `norm`) or element magnitude (`value`).
        norm_type: the p of the p-norm; `inf` for the largest magnitude.
    """

    def __init__(self, clip_type: str, clip_value: float, norm_type: float = 2.0) -> None:
        if clip_type not in ("full_model", "norm", "value", "none"):
            raise ValueError(f"clip_type must be full_model, norm, value or none; got {clip_type!r}")
        self.clip_type = clip_type
        self.clip_value = float(clip_value)
        self.norm_type = float(norm_type)
        self._host_skips = 0
        self._device_skips: Optional[Tensor] = None  # fused path: summed on the device, read on demand
        self._saved: Dict[str, Any] = {}  # the optimizer's grad_scale / found_inf before the step (a GradScaler's)

    @property
    def num_skipped(self) -> int:
        """Updates skipped for a non-finite gradient norm so far."""
        device = int(self._device_skips.item()) if self._device_skips is not None else 0
        return self._host_skips + device

    def clip_(self, grads: List[Tensor]) -> Tensor:
        """Clip `grads` in place; return the norm (or largest magnitude) measured before clipping."""
        if self.clip_type == "full_model":
            return clip_full_model_(grads, self.clip_value, self.norm_type)
        if self.clip_type == "norm":
            return clip_per_tensor_(grads, self.clip_value, self.norm_type)
        if self.clip_type == "value":
            return clip_value_(grads, self.clip_value)
        return tensor_norms(grads, math.inf).max()  # none: the check alone

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        if not all(group.get("fused") for group in optimizer.param_groups):
            self._clip_on_host(params, self.clip_(grads))
            return
        self._save(optimizer)
        if self.clip_type == "full_model":
            measured = self._clip_in_fused_kernels(optimizer, grads)
        else:
            if self.clip_type != "none" and self._saved.get("grad_scale") is not None:
                self._unscale(optimizer, grads)  # per-tensor and value limits apply to the true gradients
            measured = self.clip_(grads)
        self._flag_for_fused_kernels(optimizer, measured)

    def _clip_on_host(self, params: List[Tensor], measured: Tensor) -> None:
        if not torch.isfinite(measured):  # a host synchronisation: the update must not run at all
            self._host_skips += 1
            for p in params:
                p.grad = None
            logger.warning("Non-finite gradient norm (%s): update skipped (%d skipped so far)",
                           measured.item(), self.num_skipped)

    def _clip_in_fused_kernels(self, optimizer: torch.optim.Optimizer, grads: List[Tensor]) -> Tensor:
        """Global-norm clipping as the kernels' `grad_scale` (gradients / (scale / coefficient)); returns the
        norm of the true (unscaled) gradients."""
        scaled_by = self._saved.get("grad_scale")  # a GradScaler that did not unscale first
        total = global_norm(grads, self.norm_type)
        true_total = total if scaled_by is None else total / scaled_by
        coefficient = torch.clamp(self.clip_value / (true_total + _EPS), max=1.0)
        optimizer.grad_scale = ((1.0 if scaled_by is None else scaled_by) / coefficient).float()  # kernels: float32
        return true_total

    def _unscale(self, optimizer: torch.optim.Optimizer, grads: List[Tensor]) -> None:
        """Divide the gradients by a GradScaler's scale in place, as `GradScaler.unscale_` would (with its
        float32 reciprocal), and tell the kernels that they are unscaled."""
        inverse = self._saved["grad_scale"].double().reciprocal().float()
        torch._foreach_mul_(grads, inverse.to(grads[0].device))
        optimizer.grad_scale = None

    def _flag_for_fused_kernels(self, optimizer: torch.optim.Optimizer, measured: Tensor) -> None:
        bad = (~torch.isfinite(measured)).to(torch.float32)
        self._device_skips = bad if self._device_skips is None else self._device_skips + bad
        if self._saved.get("found_inf") is not None:  # a GradScaler's own verdict counts too
            bad = torch.maximum(bad, self._saved["found_inf"].to(bad.device))
        optimizer.found_inf = bad

    def _save(self, optimizer: torch.optim.Optimizer) -> None:
        self._saved = {name: getattr(optimizer, name) for name in _STEP_ATTRIBUTES if hasattr(optimizer, name)}

    def restore_step_attributes(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Step post-hook: leave `grad_scale` / `found_inf` as they were before the step (absent, or a
        GradScaler's)."""
        for name in _STEP_ATTRIBUTES:
            if name in self._saved:
                setattr(optimizer, name, self._saved[name])
            elif hasattr(optimizer, name):
                delattr(optimizer, name)
        self._saved = {}


def add_gradient_clipping(optimizer: torch.optim.Optimizer, cfg: Any) -> Optional[GradientClipper]:
    """Register clipping (CLIP_GRADIENTS) or the bare non-finite check (NONFINITE) of SOLVER.OPTIMIZER `cfg` on
    `optimizer`; return the hook, or None when both are off.

    The hook is also kept as `optimizer.grad_clipper` so that a trainer can read `num_skipped`.
    """
    clip = cfg.CLIP_GRADIENTS
    if clip.ENABLED:
        clipper = GradientClipper(clip.CLIP_TYPE.lower(), clip.CLIP_VALUE, clip.NORM_TYPE)
    elif cfg.NONFINITE.CHECK_GRADIENTS:
        clipper = GradientClipper("none", math.inf)
    else:
        return None
    optimizer.register_step_pre_hook(clipper)
    optimizer.register_step_post_hook(clipper.restore_step_attributes)
    optimizer.grad_clipper = clipper
    return clipper
