"""LARS: SGD with momentum and layer-wise adaptive rate scaling (You, Gitman and Ginsburg, 2017).

For each parameter tensor w with gradient g and weight decay wd, the update direction d = g + wd * w is scaled by
the trust ratio  eta * |w| / (|g| + wd * |w| + eps)  (1 where |w| or |g| is 0), then momentum and the group lr
apply as in `torch.optim.SGD`:  buf = momentum * buf + d;  w -= lr * buf  (or lr * (d + momentum * buf) with
Nesterov). Groups with `lars_exclude=True` (norm layers and biases by default) skip the trust ratio.

All tensors of a group are handled at once with `torch._foreach_*` kernels; there is no host synchronisation.
Sharded parameters (FSDP2) get the trust ratio of the full tensors: the shards' norms are reduced over the group.
"""
from typing import Any, Callable, Iterable, List, Optional

import torch
from torch import Tensor

from pet.solver.optimizers.shards import local_shards, reduce_norms


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling on top of SGD with momentum.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate.
        momentum: momentum factor (0 disables the buffer).
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        trust_coefficient: eta, the scale of the trust ratio.
        eps: added to the denominator of the trust ratio.
        nesterov: use Nesterov momentum.
        lars_exclude: default for groups that should not use the trust ratio.
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8, nesterov: bool = False,
                 lars_exclude: bool = False) -> None:
        if lr <= 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0 or eps < 0:
            raise ValueError(f"invalid LARS hyperparameters: lr={lr}, momentum={momentum}, "
                             f"weight_decay={weight_decay}, trust_coefficient={trust_coefficient}, eps={eps}")
        if nesterov and momentum == 0:
            raise ValueError("LARS: Nesterov momentum needs momentum > 0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                        eps=eps, nesterov=nesterov, lars_exclude=lars_exclude)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """Perform one update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update_group(group, params)
        return loss

    def _update_group(self, group: dict, params: List[Tensor]) -> None:
        grads = [p.grad for p in params]
        wd = group["weight_decay"]
        # A fresh list: the gradients themselves stay untouched.
        updates = torch._foreach_add(grads, params, alpha=wd) if wd else torch._foreach_mul(grads, 1.0)
        if not group["lars_exclude"]:
            torch._foreach_mul_(local_shards(updates)[0], self._trust_ratios(params, grads, group))
        momentum = group["momentum"]
        if momentum:
            buffers = self._momentum_buffers(params, updates, momentum)
            if group["nesterov"]:
                torch._foreach_add_(updates, buffers, alpha=momentum)
            else:
                updates = buffers
        torch._foreach_add_(params, updates, alpha=-group["lr"])

    @staticmethod
    def _trust_ratios(params: List[Tensor], grads: List[Tensor], group: dict) -> List[Tensor]:
        (local_params, shards_group), (local_grads, _) = local_shards(params), local_shards(grads)
        w_norm = reduce_norms(torch.stack(torch._foreach_norm(local_params)), 2.0, shards_group)
        g_norm = reduce_norms(torch.stack(torch._foreach_norm(local_grads)), 2.0, shards_group)
        ratio = group["trust_coefficient"] * w_norm / (g_norm + group["weight_decay"] * w_norm + group["eps"])
        ratio = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
        return list(ratio.unbind(0))

    def _momentum_buffers(self, params: List[Tensor], updates: List[Tensor], momentum: float) -> List[Tensor]:
        """Advance each buffer to momentum * buf + update (a copy of the update on the first step)."""
        old, old_updates, buffers = [], [], []
        for p, u in zip(params, updates):
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = u.clone()
            else:
                old.append(state["momentum_buffer"])
                old_updates.append(u)
            buffers.append(state["momentum_buffer"])
        if old:
            torch._foreach_mul_(old, momentum)
            torch._foreach_add_(old, old_updates)
        return buffers
