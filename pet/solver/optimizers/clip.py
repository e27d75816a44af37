"""Gradient clipping and the non-finite check, as plain functions on a list of gradients.

- `full_model`: one global norm over all gradients, as `torch.nn.utils.clip_grad_norm_`.
- `norm`: each gradient clipped to its own norm; all norms come from one `torch._foreach_norm` call, and the
  result equals a loop of per-tensor `clip_grad_norm_`.
- `value`: every element clamped to [-CLIP_VALUE, CLIP_VALUE], as `torch.nn.utils.clip_grad_value_`.

Each function returns a non-finite flag: a float32 0-dim tensor on the gradients' device, 1.0 when an element was
inf or NaN (the form torch's fused kernels and `GradScaler` take as `found_inf`). Nothing here synchronises with
the host.

Sharded gradients (FSDP2's DTensors) are handled through their local shards (`pet.solver.optimizers.shards`) and the process
group they are sharded over: norms and flags are then reduced over the group (one all-reduce each), so every
process sees the norm of the full tensors and the same flag, and skips or takes the update with the others.
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from pet.solver.optimizers.shards import Group, reduce_flag, reduce_norms

# Same guard as torch's clip_grad_norm_, so `norm` matches a loop of it exactly.
_EPS = 1e-6


def norm_dtype(grads: List[Tensor]) -> Optional[torch.dtype]:
    """The dtype norms are accumulated in: float32 for half-precision gradients (their own dtype loses digits,
    and torch's fused kernels take `grad_scale` / `found_inf` in float32), else the gradients' own."""
    return torch.float32 if any(g.dtype in (torch.float16, torch.bfloat16) for g in grads) else None


def tensor_norms(grads: List[Tensor], norm_type: float, group: Group = None) -> Tensor:
    """The p-norm of each of `grads` (of the full tensors, with the group of sharded ones), stacked, from one
    `torch._foreach_norm` call."""
    dtype = norm_dtype(grads)
    if all(g.numel() for g in grads):
        return reduce_norms(torch.stack(torch._foreach_norm(grads, norm_type, dtype=dtype)), norm_type, group)
    # A process may hold an empty shard of a small tensor: its norm is 0 (torch has no inf-norm of nothing).
    filled = [i for i, g in enumerate(grads) if g.numel()]
    norms = torch.zeros(len(grads), dtype=dtype or grads[0].dtype, device=grads[0].device)
    if filled:
        norms[filled] = torch.stack(torch._foreach_norm([grads[i] for i in filled], norm_type, dtype=dtype))
    return reduce_norms(norms, norm_type, group)


def global_norm(grads: List[Tensor], norm_type: float, group: Group = None) -> Tensor:
    """The p-norm of all `grads` together."""
    return torch.linalg.vector_norm(tensor_norms(grads, norm_type, group), norm_type)


def is_non_finite(value: Tensor) -> Tensor:
    """1.0 where any element of `value` is inf or NaN, else 0.0: a float32 0-dim flag."""
    return (~torch.isfinite(value)).any().to(torch.float32)


def non_finite_flag(grads: List[Tensor], group: Group = None) -> Tensor:
    """1.0 if any element of `grads` is inf or NaN, else 0.0, exactly (large finite values are finite).

    torch's own GradScaler kernel answers this with a unit scale in one pass over the gradients, several times
    faster on CPU than an inf-norm, and unlike a 2-norm it cannot overflow for finite gradients.
    """
    flag = torch.zeros((), dtype=torch.float32, device=grads[0].device)
    dense = [g for g in grads if not (g.is_complex() or g.is_sparse)]
    if dense:
        torch._amp_foreach_non_finite_check_and_unscale_(dense, flag, torch.ones((), device=flag.device))
    for g in grads:  # the kernel takes dense real tensors only
        if g.is_sparse:
            flag = torch.maximum(flag, is_non_finite(g.coalesce().values()))
        elif g.is_complex():
            flag = torch.maximum(flag, is_non_finite(g))
    return reduce_flag(flag, group)


def clip_coefficient(total: Tensor, max_norm: float) -> Tensor:
    """The factor that brings a norm of `total` down to `max_norm` (1 when it is below), as clip_grad_norm_."""
    return torch.clamp(max_norm / (total + _EPS), max=1.0)


def clip_full_model_(grads: List[Tensor], max_norm: float, norm_type: float,
                     group: Group = None) -> Tuple[Tensor, Tensor]:
    """Scale all `grads` in place so that their global norm is at most `max_norm`; return the non-finite flag and
    the global norm before clipping."""
    total = global_norm(grads, norm_type, group)
    torch._foreach_mul_(grads, clip_coefficient(total, max_norm))
    return is_non_finite(total), total


def clip_per_tensor_(grads: List[Tensor], max_norm: float, norm_type: float,
                     group: Group = None) -> Tuple[Tensor, Tensor]:
    """Scale each of `grads` in place so that its own norm is at most `max_norm`; return the non-finite flag and
    the global norm before clipping (the p-norm of the tensors' p-norms: no second pass over the gradients)."""
    norms = tensor_norms(grads, norm_type, group)
    torch._foreach_mul_(grads, list(clip_coefficient(norms, max_norm).unbind(0)))
    return is_non_finite(norms), torch.linalg.vector_norm(norms, norm_type)


def clip_value_(grads: List[Tensor], clip_value: float, group: Group = None) -> Tensor:
    """Clamp every element of `grads` to [-clip_value, clip_value]; return the non-finite flag (before)."""
    flag = non_finite_flag(grads, group)
    torch._foreach_clamp_min_(grads, -clip_value)
    torch._foreach_clamp_max_(grads, clip_value)
    return flag


def clip_(grads: List[Tensor], clip_type: str, clip_value: float = math.inf, norm_type: float = 2.0,
          group: Group = None) -> Tuple[Tensor, Optional[Tensor]]:
    """Clip `grads` in place by `clip_type` (`full_model`, `norm`, `value`, or `none` for the check alone);
    return the non-finite flag, and the global norm before clipping where the clip type computes norms.
    `grads` are local shards of tensors sharded over `group` (`local_shards`), or whole tensors without one."""
    if clip_type == "full_model":
        return clip_full_model_(grads, clip_value, norm_type, group)
    if clip_type == "norm":
        return clip_per_tensor_(grads, clip_value, norm_type, group)
    if clip_type == "value":
        return clip_value_(grads, clip_value, group), None
    return non_finite_flag(grads, group), None
