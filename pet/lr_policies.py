"""The learning-rate policies (SOLVER.SCHEDULER.POLICY): each one's multiplier of k and what it reads.

A policy is registered once, in `POLICIES`, with everything the rest of the project needs to know about it: its
pure multiplier f(k) (a closed form, so any k can be asked for and past the end it holds), the SCHEDULER keys it
reads, which of those count optimizer updates (in epochs when TOTAL_EPOCHS is set; the linear scaling rule
rescales them), whether it rises from a low lr by itself (then the generic warmup does not apply), and the
check of its keys against the run length. The config validates from this declaration, the scheduler converts
epochs and calls the multiplier with it, and the scaling rule and the plots read it: adding a policy touches
this file alone.

Every multiplier takes (k, total_iters, **arguments), the arguments named after the keys' last parts in lower
case (STEPS -> steps, ONE_CYCLE.PCT_START -> pct_start).
"""
import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

# (key, what is allowed) when a policy's keys do not fit the run length; None when they do.
Check = Callable[[Mapping[str, Any], float, str], Optional[Tuple[str, str]]]


def _half_cosine(progress: float, min_factor: float) -> float:
    """From 1 at progress 0 down to m at progress 1, along half a cosine period."""
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def constant_factor(k: int, total_iters: int) -> float:
    """1: the base lr throughout (after the warmup); for optimizers that need no decay (schedule-free ones)."""
    return 1.0


def step_factor(k: int, total_iters: int, steps: Sequence[float], gamma: float) -> float:
    """GAMMA^(number of milestones <= k): the decay applies at the milestone itself."""
    return gamma ** bisect_right(steps, k)


def cosine_factor(k: int, total_iters: int, min_lr_factor: float) -> float:
    """m + (1-m) * (1 + cos(pi * min(k, M) / M)) / 2; holds m after M."""
    return _half_cosine(min(k, total_iters) / total_iters, min_lr_factor)


def poly_factor(k: int, total_iters: int, lr_pow: float, min_lr_factor: float) -> float:
    """m + (1-m) * (1 - min(k, M) / M)^power; holds m after M (never complex)."""
    remaining = 1.0 - min(k, total_iters) / total_iters
    return min_lr_factor + (1.0 - min_lr_factor) * remaining ** lr_pow


def step_cosine_factor(k: int, total_iters: int, steps: Sequence[float], gamma: float, min_lr_factor: float) -> float:
    """STEP until the last milestone S[-1], then a cosine from GAMMA^(n-1) down to GAMMA^(n-1) * m at M."""
    last = steps[-1]
    if k < last:
        return step_factor(k, total_iters, steps, gamma)
    progress = min(k - last, total_iters - last) / (total_iters - last)
    return gamma ** (len(steps) - 1) * _half_cosine(progress, min_lr_factor)


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


CHAIN_POLICIES = ("CONSTANT", "STEP", "COSINE", "POLY")


def chain_factor(k: int, total_iters: int, phases: Sequence[Tuple[str, int, int]], steps: Sequence[float],
                 gamma: float, lr_pow: float, min_lr_factor: float) -> float:
    """Phases (POLICY, BEGIN, END) back to back: each multiplies the factor the previous one ended at.

    CONSTANT holds; STEP decays by GAMMA at the milestones of STEPS inside the phase; COSINE and POLY decay to
    m times the carried factor over the phase. Between and after phases the factor holds.
    """
    carried = 1.0
    for policy, begin, end in phases:
        if k < begin:
            break
        local, length = min(k, end) - begin, end - begin
        if policy.upper() == "STEP":
            value = step_factor(begin + local, length, [s for s in steps if begin < s < end], gamma)
        elif policy.upper() == "COSINE":
            value = cosine_factor(local, length, min_lr_factor)
        elif policy.upper() == "POLY":
            value = poly_factor(local, length, lr_pow, min_lr_factor)
        else:
            value = 1.0
        carried *= value
    return carried


def _steps_inside(arguments: Mapping[str, Any], total: float, total_name: str) -> Optional[Tuple[str, str]]:
    if arguments["steps"][-1] >= total:
        return "STEPS", f"each step in (0, {total_name})"
    return None


def _chain_inside(arguments: Mapping[str, Any], total: float, total_name: str) -> Optional[Tuple[str, str]]:
    phases = arguments["phases"]
    if phases and phases[-1][2] > total:
        return "CHAIN.PHASES", f"phases that end by {total_name}"
    if any(policy.upper() == "STEP" for policy, _, _ in phases):
        return _steps_inside(arguments, total, total_name)
    return None


def _chain_uses(arguments: Mapping[str, Any]) -> Tuple[str, ...]:
    used = {policy.upper() for policy, _, _ in arguments["phases"]}
    return ("CHAIN.PHASES",) + (("STEPS", "GAMMA") if "STEP" in used else ()) + (
        ("LR_POW",) if "POLY" in used else ()) + (("MIN_LR_FACTOR",) if used & {"COSINE", "POLY"} else ())


@dataclass(frozen=True)
class Policy:
    """A decay policy: its multiplier and what it reads.

    Attributes:
        factor: (k, total_iters, **arguments) -> the multiplier of every group's base lr.
        keys: the SCHEDULER keys passed to `factor` (dotted below SCHEDULER).
        counts: those of `keys` that count in the run's units: updates, or epochs when TOTAL_EPOCHS is set.
        iterations: those of `keys` that count updates whatever the units (NOAM.WARMUP_ITERS).
        own_rise: it rises from a low lr by itself, so the generic warmup does not multiply it.
        check: the check of its keys against the run length.
        uses: the keys it really reads for given arguments (all of `keys` when None).
    """

    factor: Callable[..., float]
    keys: Tuple[str, ...] = ()
    counts: Tuple[str, ...] = ()
    iterations: Tuple[str, ...] = ()
    own_rise: bool = False
    check: Optional[Check] = None
    uses: Optional[Callable[[Mapping[str, Any]], Tuple[str, ...]]] = None

    def used_keys(self, arguments: Mapping[str, Any]) -> Tuple[str, ...]:
        """The keys that matter for these arguments."""
        return self.uses(arguments) if self.uses is not None else self.keys


def argument_name(key: str) -> str:
    """The multiplier's argument for a SCHEDULER key: its last dotted part in lower case."""
    return key.rsplit(".", 1)[-1].lower()


POLICIES: Dict[str, Policy] = {
    "CONSTANT": Policy(constant_factor),
    "STEP": Policy(step_factor, ("STEPS", "GAMMA"), ("STEPS",), check=_steps_inside),
    "COSINE": Policy(cosine_factor, ("MIN_LR_FACTOR",)),
    "STEP_COSINE": Policy(step_cosine_factor, ("STEPS", "GAMMA", "MIN_LR_FACTOR"), ("STEPS",), check=_steps_inside),
    "POLY": Policy(poly_factor, ("LR_POW", "MIN_LR_FACTOR")),
    "ONE_CYCLE": Policy(one_cycle_factor, ("ONE_CYCLE.PCT_START", "ONE_CYCLE.DIV_FACTOR", "ONE_CYCLE.FINAL_DIV_FACTOR"),
                        own_rise=True),
    "NOAM": Policy(noam_factor, ("NOAM.WARMUP_ITERS",), iterations=("NOAM.WARMUP_ITERS",), own_rise=True),
    "CHAIN": Policy(chain_factor, ("CHAIN.PHASES", "STEPS", "GAMMA", "LR_POW", "MIN_LR_FACTOR"),
                    ("CHAIN.PHASES", "STEPS"), check=_chain_inside, uses=_chain_uses),
}


def map_counts(value: Any, convert: Callable[[float], int]) -> Any:
    """`convert` applied to a count, to each count of a list, or to the BEGIN and END of CHAIN phases (their policy
    names kept): the one walk over every value a policy declares as counting updates."""
    if isinstance(value, (list, tuple)):
        return tuple(item if isinstance(item, str) else map_counts(item, convert) for item in value)
    return convert(value)


def lookup(node: Any, dotted: str) -> Any:
    """`node[A][B]` for the key "A.B" (a config node or a section table)."""
    for part in dotted.split("."):
        node = node[part]
    return node


def policy_arguments(sched: Any) -> Dict[str, Any]:
    """The arguments a SCHEDULER node gives its policy's multiplier, by argument name, in the node's units."""
    return {argument_name(key): lookup(sched, key) for key in POLICIES[sched.POLICY.upper()].keys}
