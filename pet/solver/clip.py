"""Gradient clipping as an optimizer step pre-hook, for every optimizer type (SPEC §5).

- `full_model`: one global norm over all gradients, as `torch.nn.utils.clip_grad_norm_`.
- `norm`: each gradient clipped to its own norm; all norms come from one `torch._foreach_norm` call, and the
  result equals a loop of per-tensor `clip_grad_norm_`.
- `value`: every element clamped to [-CLIP_VALUE, CLIP_VALUE], as `torch.nn.utils.clip_grad_value_`.

A non-finite gradient norm skips the update: the hook removes the gradients (`grad = None`), so the optimizer
leaves the parameters and its state (momentum, Adam moments, step counts) untouched. Skips are counted in
`GradientClipper.num_skipped` and logged.
"""
import logging
import math
from typing import Any, List

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

# Same guard as torch's clip_grad_norm_, so `norm` matches a loop of it exactly.
_EPS = 1e-6


def clip_full_model_(grads: List[Tensor], max_norm: float, norm_type: float) -> Tensor:
    """Scale all `grads` in place so that their global norm is at most `max_norm`; return the norm before."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, norm_type)), norm_type)
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + _EPS), max=1.0))
    return total


def clip_per_tensor_(grads: List[Tensor], max_norm: float, norm_type: float) -> Tensor:
    """Scale each of `grads` in place so that its own norm is at most `max_norm`; return the largest norm."""
    norms = torch.stack(torch._foreach_norm(grads, norm_type))
    scales = torch.clamp(max_norm / (norms + _EPS), max=1.0)
    torch._foreach_mul_(grads, list(scales.unbind(0)))
    return norms.max()


def clip_value_(grads: List[Tensor], clip_value: float) -> Tensor:
    """Clamp every element of `grads` to [-clip_value, clip_value]; return the largest |element| before."""
    largest = torch.stack(torch._foreach_norm(grads, math.inf)).max()
    torch._foreach_clamp_min_(grads, -clip_value)
    torch._foreach_clamp_max_(grads, clip_value)
    return largest


class GradientClipper:
    """A step pre-hook that clips the gradients of all the optimizer's parameters before each update.

    Args:
        clip_type: `full_model`, `norm` or `value`.
        clip_value: the largest norm (`full_model`, `norm`) or element magnitude (`value`).
        norm_type: the p of the p-norm; `inf` for the largest magnitude.
    """

    def __init__(self, clip_type: str, clip_value: float, norm_type: float = 2.0) -> None:
        if clip_type not in ("full_model", "norm", "value"):
            raise ValueError(f"clip_type must be full_model, norm or value; got {clip_type!r}")
        self.clip_type = clip_type
        self.clip_value = float(clip_value)
        self.norm_type = float(norm_type)
        self.num_skipped = 0

    def clip_(self, grads: List[Tensor]) -> Tensor:
        """Clip `grads` in place; return the norm (or largest magnitude) measured before clipping."""
        if self.clip_type == "full_model":
            return clip_full_model_(grads, self.clip_value, self.norm_type)
        if self.clip_type == "norm":
            return clip_per_tensor_(grads, self.clip_value, self.norm_type)
        return clip_value_(grads, self.clip_value)

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        measured = self.clip_([p.grad for p in params])
        # The one host synchronisation of clipping: whether this update may run at all.
        if not torch.isfinite(measured):
            self.num_skipped += 1
            for p in params:
                p.grad = None
            logger.warning("Non-finite gradient norm (%s): update skipped (%d skipped so far)",
                           measured.item(), self.num_skipped)


def add_gradient_clipping(optimizer: torch.optim.Optimizer, cfg: Any) -> GradientClipper:
    """Register clipping from SOLVER.OPTIMIZER.CLIP_GRADIENTS on `optimizer`; return the hook.

    The hook is also kept as `optimizer.grad_clipper` so that a trainer can read `num_skipped`.
    """
    clipper = GradientClipper(cfg.CLIP_TYPE.lower(), cfg.CLIP_VALUE, cfg.NORM_TYPE)
    optimizer.register_step_pre_hook(clipper)
    optimizer.grad_clipper = clipper
    return clipper
