"""Param-group fields besides the lr that a schedule may drive (timm's `param_group_field` idea): momentum (or
Adam's beta1) and weight decay. Each is a closed form of the update count k, written into every group."""
from typing import Any, Dict, List, Protocol

from pet.solver.schedules.lr_schedule import cosine_ramp


class ScheduledField(Protocol):
    """What `ClosedFormScheduler` calls after writing the lrs of update k (lr_factor: f(k))."""

    name: str

    def write(self, groups: List[Dict[str, Any]], k: int, lr_factor: float) -> None: ...


class MomentumSchedule:
    """Momentum (SGD, RMSprop, LARS) or Adam's beta1: COSINE from `start` to `end` over the run, or CYCLIC,
    start - (start - end) * f(k), low when the lr is high (one-cycle's cyclical momentum)."""

    name = "momentum"

    def __init__(self, policy: str, start: float, end: float, total_iters: int) -> None:
        if policy not in ("COSINE", "CYCLIC"):
            raise ValueError(f"momentum policy must be COSINE or CYCLIC, got {policy!r}")
        self.policy, self.start, self.end, self.total_iters = policy, start, end, total_iters

    def value(self, k: int, lr_factor: float) -> float:
        """The momentum of update k."""
        if self.policy == "COSINE":
            return cosine_ramp(k, self.total_iters, self.start, self.end)
        return self.start - (self.start - self.end) * lr_factor

    def write(self, groups: List[Dict[str, Any]], k: int, lr_factor: float) -> None:
        momentum = self.value(k, lr_factor)
        for group in groups:
            if "betas" in group:
                group["betas"] = (momentum, group["betas"][1])
            else:
                group["momentum"] = momentum


class WeightDecaySchedule:
    """Each group's weight decay times a factor going from 1 to `end_factor` along half a cosine."""

    name = "weight_decay"

    def __init__(self, end_factor: float, total_iters: int) -> None:
        self.end_factor, self.total_iters = end_factor, total_iters

    def write(self, groups: List[Dict[str, Any]], k: int, lr_factor: float) -> None:
        factor = cosine_ramp(k, self.total_iters, 1.0, self.end_factor)
        for group in groups:
            group["weight_decay"] = group["initial_weight_decay"] * factor
