"""Learning-rate schedules as pure functions of the update count k.

Nothing here holds state or touches an optimizer: f(k) = warmup(k) * policy(k) is a closed form, so any
iteration can be evaluated directly (for a resume, a plot or a test) and past the end every policy holds.
"""
import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Sequence, Tuple


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


def step_factor(k: int, steps: Sequence[float], gamma: float) -> float:
    """GAMMA^(number of milestones <= k): the decay applies at the milestone itself."""
    return gamma ** bisect_right(steps, k)


def _half_cosine(progress: float, min_factor: float) -> float:
    """From 1 at progress 0 down to m at progress 1, along half a cosine period."""
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_factor(k: int, total_iters: int, min_factor: float) -> float:
    """m + (1-m) * (1 + cos(pi * min(k, M) / M)) / 2; holds m after M."""
    return _half_cosine(min(k, total_iters) / total_iters, min_factor)


def poly_factor(k: int, total_iters: int, power: float, min_factor: float) -> float:
    """m + (1-m) * (1 - min(k, M) / M)^power; holds m after M (never complex)."""
    remaining = 1.0 - min(k, total_iters) / total_iters
    return min_factor + (1.0 - min_factor) * remaining ** power


def step_cosine_factor(k: int, steps: Sequence[float], gamma: float, total_iters: int, min_factor: float) -> float:
    """STEP until the last milestone S[-1], then a cosine from GAMMA^(n-1) down to GAMMA^(n-1) * m at M."""
    last = steps[-1]
    if k < last:
        return step_factor(k, steps, gamma)
    progress = min(k - last, total_iters - last) / (total_iters - last)
    return gamma ** (len(steps) - 1) * _half_cosine(progress, min_factor)


def one_cycle_factor(k: int, total_iters: int, pct_start: float, div_factor: float, final_div_factor: float) -> float:
    """Smith's one cycle, as torch's `OneCycleLR` (cosine, two phases) computes it: from 1/div up to 1 at
    k = pct_start * M - 1, then down to 1/(div * final_div) at k = M - 1, both along half a cosine; holds after."""
    peak = pct_start * total_iters - 1.0
    start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)
    if 0 < peak and k <= peak:
        return start + (1.0 - start) * (1.0 - _half_cosine(k / peak, 0.0))
    last = total_iters - 1.0
    return _half_cosine((min(k, last) - peak) / (last - peak), end)


def noam_factor(k: int, total_iters: int, warmup_iters: int) -> float:
    """Noam: min((k+1) / W, sqrt(W / (k+1))), 1 at k + 1 = W; holds after M."""
    step = min(k, total_iters) + 1
    return min(step / warmup_iters, math.sqrt(warmup_iters / step))


def chain_factor(k: int, phases: Sequence[Tuple[str, int, int]], steps: Sequence[float], gamma: float,
                 power: float, min_factor: float) -> float:
    """Phases (POLICY, BEGIN, END) back to back: each multiplies the factor the previous one ended at.

    CONSTANT holds; STEP decays by GAMMA at the milestones of STEPS inside the phase; COSINE and POLY decay to
    m times the carried factor over the phase. Between and after phases the factor holds.
    """
    carried = 1.0
    for policy, begin, end in phases:
        if k < begin:
            break
        local, length = min(k, end) - begin, end - begin
        if policy == "STEP":
            value = step_factor(begin + local, [s for s in steps if begin < s < end], gamma)
        elif policy == "COSINE":
            value = cosine_factor(local, length, min_factor)
        elif policy == "POLY":
            value = poly_factor(local, length, power, min_factor)
        else:
            value = 1.0
        carried *= value
    return carried


def cosine_ramp(k: int, total_iters: int, start: float, end: float) -> float:
    """From `start` at k = 0 to `end` at k = M along half a cosine; holds after M (momentum, weight decay)."""
    return end + (start - end) * _half_cosine(min(k, total_iters) / total_iters, 0.0)


@dataclass(frozen=True)
class LRSchedule:
    """The whole LR multiplier f(k) = warmup(k) * policy(k), all lengths in optimizer updates."""

    policy: str
    total_iters: int
    steps: Tuple[float, ...]
    gamma: float
    warmup_iters: int
    warmup_factor: float
    warmup_method: str
    lr_pow: float
    min_lr_factor: float
    one_cycle: Tuple[float, float, float] = (0.3, 25.0, 1e4)  # PCT_START, DIV_FACTOR, FINAL_DIV_FACTOR
    noam_warmup_iters: int = 4000
    phases: Tuple[Tuple[str, int, int], ...] = ()

    def policy_factor(self, k: int) -> float:
        """The decay policy's multiplier at update k, without warmup."""
        if self.policy == "STEP":
            return step_factor(k, self.steps, self.gamma)
        if self.policy == "COSINE":
            return cosine_factor(k, self.total_iters, self.min_lr_factor)
        if self.policy == "POLY":
            return poly_factor(k, self.total_iters, self.lr_pow, self.min_lr_factor)
        if self.policy == "STEP_COSINE":
            return step_cosine_factor(k, self.steps, self.gamma, self.total_iters, self.min_lr_factor)
        if self.policy == "ONE_CYCLE":
            return one_cycle_factor(k, self.total_iters, *self.one_cycle)
        if self.policy == "NOAM":
            return noam_factor(k, self.total_iters, self.noam_warmup_iters)
        if self.policy == "CHAIN":
            return chain_factor(k, self.phases, self.steps, self.gamma, self.lr_pow, self.min_lr_factor)
        raise ValueError(f"unknown policy {self.policy!r}; expected STEP, COSINE, STEP_COSINE, POLY, ONE_CYCLE, "
                         "NOAM or CHAIN")

    def __call__(self, k: int) -> float:
        """f(k): the multiplier of every group's base lr for update k."""
        return warmup_factor(k, self.warmup_iters, self.warmup_factor, self.warmup_method) * self.policy_factor(k)
