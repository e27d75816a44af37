"""The learning-rate multiplier f(k) = warmup(k) * policy(k), a pure function of the update count k.

Nothing here holds state or touches an optimizer: f is a closed form, so any iteration can be evaluated directly
(for a resume, a plot or a test) and past the end every policy holds. The policies themselves are declared in
`pet.lr_policies`.
"""
import math
from dataclasses import dataclass, field
from typing import Any, Dict

from pet.lr_policies import POLICIES


def warmup_factor(k: int, warmup_iters: int, factor: float, method: str) -> float:
    """Warmup multiplier: 1 for k >= W; below W, with a = k/W, CONSTANT F, LINEAR F(1-a)+a, EXP F^(1-a)."""
    if k >= warmup_iters:
        return 1.0
    a = k / warmup_iters
    if method == "CONSTANT":
        return factor
    if method == "LINEAR":
        return factor * (1.0 - a) + a
    if method == "EXP":
        return factor ** (1.0 - a)
    raise ValueError(f"unknown warmup method {method!r}; expected CONSTANT, LINEAR or EXP")


def cosine_ramp(k: int, total_iters: int, start: float, end: float) -> float:
    """From `start` at k = 0 to `end` at k = M along half a cosine; holds after M (momentum, weight decay)."""
    progress = min(k, total_iters) / total_iters
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class LRSchedule:
    """The whole LR multiplier f(k) = warmup(k) * policy(k), all lengths in optimizer updates.

    Attributes:
        policy: a name of `pet.lr_policies.POLICIES` (STEP, COSINE, ...).
        total_iters: the run length M.
        arguments: the policy's arguments (steps, gamma, min_lr_factor, ...; see its multiplier).
        warmup_iters, warmup_factor, warmup_method: the generic warmup (W = 0: none).

    Example:
        >>> f = LRSchedule("STEP", 100, {"steps": (30, 60), "gamma": 0.1}, warmup_iters=10)
        >>> f(0), f(10), f(30)
        (0.1, 1.0, 0.1)
    """

    policy: str
    total_iters: int
    arguments: Dict[str, Any] = field(default_factory=dict)
    warmup_iters: int = 0
    warmup_factor: float = 0.1
    warmup_method: str = "LINEAR"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; expected one of {', '.join(POLICIES)}")

    def policy_factor(self, k: int) -> float:
        """The decay policy's multiplier at update k, without warmup."""
        return POLICIES[self.policy].factor(k, self.total_iters, **self.arguments)

    def __call__(self, k: int) -> float:
        """f(k): the multiplier of every group's base lr for update k."""
        return warmup_factor(k, self.warmup_iters, self.warmup_factor, self.warmup_method) * self.policy_factor(k)
