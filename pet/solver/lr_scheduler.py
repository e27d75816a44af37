"""`LearningRateScheduler`: a thin torch adapter over the closed-form schedules of `schedules`.

The lr of group g after k updates is always initial_lr_g * FT_FACTOR * f(k), computed from scratch: never from
the current lr, so a hand edit, a resume or a second scheduler cannot compound. Momentum (or Adam's beta1) and
weight decay follow their own closed forms when SCHEDULER.MOMENTUM / WEIGHT_DECAY ask for it. `state_dict()` holds
the update count; loading it rewrites every group's values, so the first update after a resume runs exactly as
in an uninterrupted run.
"""
import logging
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.optim.lr_scheduler import LRScheduler

from pet.config.errors import ConfigError
from pet.config.validation import (LR_SCALING_RULES, OWN_RISE_POLICIES, check_node, invalid_value,
                                   validate_scheduler_cfg)
from pet.solver.schedules import LRSchedule, cosine_ramp

logger = logging.getLogger(__name__)


def _epochs_to_iters(epochs: float, iter_per_epoch: int) -> int:
    return int(round(epochs * iter_per_epoch))


def lr_schedule_from_cfg(solver_cfg: Any, iter_per_epoch: int = -1, prefix: str = "SOLVER") -> LRSchedule:
    """Build the pure schedule from the SOLVER node, converting epoch units with `iter_per_epoch`.

    Raises `ConfigError` for invalid keys, and for epoch units (TOTAL_EPOCHS or WARM_UP_EPOCHS) without
    `iter_per_epoch > 0`. `prefix` is the config key of `solver_cfg`, for error messages.
    """
    sched, key = solver_cfg.SCHEDULER, f"{prefix}.SCHEDULER"
    validate_scheduler_cfg(sched, prefix=key)
    for name in ("TOTAL_EPOCHS", "WARM_UP_EPOCHS"):
        if sched[name] is not None and not iter_per_epoch > 0:
            raise ConfigError(f"{key}.{name} = {sched[name]!r} is in epochs and needs iter_per_epoch > 0 "
                              f"(got {iter_per_epoch}); set {key}.{name} to None to count in iterations")
    per_unit = 1 if sched.TOTAL_EPOCHS is None else iter_per_epoch
    total = sched.TOTAL_ITERS if sched.TOTAL_EPOCHS is None else sched.TOTAL_EPOCHS * iter_per_epoch
    steps = tuple(sched.STEPS) if per_unit == 1 else tuple(_epochs_to_iters(s, per_unit) for s in sched.STEPS)
    phases = tuple((policy.upper(), _epochs_to_iters(begin, per_unit), _epochs_to_iters(end, per_unit))
                   for policy, begin, end in sched.CHAIN.PHASES)
    if per_unit > 1:
        _check_in_iters(steps, phases, total, sched, key, iter_per_epoch)
    if sched.POLICY.upper() in OWN_RISE_POLICIES:
        warmup = 0
    elif sched.WARM_UP_EPOCHS is None:
        warmup = sched.WARM_UP_ITERS
    else:
        warmup = _epochs_to_iters(sched.WARM_UP_EPOCHS, iter_per_epoch)
    one_cycle = sched.ONE_CYCLE
    return LRSchedule(
        policy=sched.POLICY.upper(), total_iters=total, steps=steps, gamma=sched.GAMMA, warmup_iters=warmup,
        warmup_factor=sched.WARM_UP_FACTOR, warmup_method=sched.WARM_UP_METHOD.upper(), lr_pow=sched.LR_POW,
        min_lr_factor=sched.MIN_LR_FACTOR,
        one_cycle=(one_cycle.PCT_START, one_cycle.DIV_FACTOR, one_cycle.FINAL_DIV_FACTOR),
        noam_warmup_iters=sched.NOAM.WARMUP_ITERS, phases=phases,
    )


def _check_in_iters(steps: tuple, phases: tuple, total: int, sched: Any, key: str, iter_per_epoch: int) -> None:
    """Epoch STEPS and CHAIN phases must stay distinct and inside the run once rounded to iterations."""
    uses_steps = sched.POLICY.upper() in ("STEP", "STEP_COSINE") or any(p[0] == "STEP" for p in phases)
    if uses_steps and (steps[0] <= 0 or any(a >= b for a, b in zip(steps, steps[1:])) or steps[-1] >= total):
        raise ConfigError(invalid_value(
            f"{key}.STEPS", tuple(sched.STEPS),
            f"epochs that stay distinct and inside (0, {total}) iterations at {iter_per_epoch} iterations per "
            f"epoch (they become {steps})"))
    if any(begin >= end for _, begin, end in phases):
        raise ConfigError(invalid_value(f"{key}.CHAIN.PHASES", tuple(sched.CHAIN.PHASES),
                                        f"phases at least one iteration long at {iter_per_epoch} per epoch"))


def momentum_schedule(sched: Any, total_iters: int) -> Optional[Callable[[int, float], float]]:
    """(k, lr factor) -> momentum for SCHEDULER.MOMENTUM, or None for CONSTANT (momentum left alone)."""
    start, end = sched.MOMENTUM.START, sched.MOMENTUM.END
    policy = sched.MOMENTUM.POLICY.upper()
    if policy == "COSINE":
        return lambda k, factor: cosine_ramp(k, total_iters, start, end)
    if policy == "CYCLIC":
        return lambda k, factor: start - (start - end) * factor
    return None


def weight_decay_schedule(sched: Any, total_iters: int) -> Optional[Callable[[int], float]]:
    """k -> weight-decay multiplier for SCHEDULER.WEIGHT_DECAY, or None for CONSTANT."""
    if sched.WEIGHT_DECAY.POLICY.upper() == "COSINE":
        end = sched.WEIGHT_DECAY.END_FACTOR
        return lambda k: cosine_ramp(k, total_iters, 1.0, end)
    return None


class LearningRateScheduler(LRScheduler):
    """Sets every group's lr to initial_lr * f(k), where k is the number of optimizer updates done.

    Args:
        optimizer: the optimizer whose groups it drives (their `lr` at construction is their base lr).
        solver_cfg: the SOLVER node (SCHEDULER keys, LR_SCALING.FT_FACTOR, and OPTIMIZER.BASE_LR for log messages).
        start_iter: k at construction, e.g. the iteration a run resumes from.
        iter_per_epoch: iterations per epoch; needed only for epoch units.
        prefix: the config key of `solver_cfg`, for error messages.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, solver_cfg: Any, start_iter: int = 0,
                 iter_per_epoch: int = -1, prefix: str = "SOLVER") -> None:
        if not isinstance(start_iter, int) or isinstance(start_iter, bool) or start_iter < 0:
            raise ValueError(f"start_iter must be an integer >= 0, got {start_iter!r}")
        self.schedule = lr_schedule_from_cfg(solver_cfg, iter_per_epoch, prefix)
        check_node(solver_cfg.LR_SCALING, LR_SCALING_RULES, f"{prefix}.LR_SCALING")
        total = self.schedule.total_iters
        self.momentum = momentum_schedule(solver_cfg.SCHEDULER, total)
        self.weight_decay = weight_decay_schedule(solver_cfg.SCHEDULER, total)
        if self.momentum is not None and not all("momentum" in g or "betas" in g for g in optimizer.param_groups):
            raise ConfigError(f"{prefix}.SCHEDULER.MOMENTUM.POLICY = {solver_cfg.SCHEDULER.MOMENTUM.POLICY!r} needs "
                              f"an optimizer with momentum or betas; {type(optimizer).__name__} has neither")
        self.ft_factor = float(solver_cfg.LR_SCALING.FT_FACTOR)
        self.log_threshold = float(solver_cfg.SCHEDULER.LOG_LR_CHANGE_THRESHOLD)
        self.reference_lr = float(solver_cfg.OPTIMIZER.BASE_LR) * self.ft_factor
        self._log_prefix = "" if prefix == "SOLVER" else f"{prefix}: "  # which of several optimizers
        self._factor: Optional[float] = None
        for group in optimizer.param_groups:
            group.setdefault("initial_weight_decay", group.get("weight_decay", 0.0))
        super().__init__(optimizer, last_epoch=-1)  # records initial_lr, then calls step() once: k = 0
        self.last_epoch = start_iter
        self._apply_lrs(log=False)

    def get_lr(self) -> List[float]:
        """The closed-form lr of every group at the current update count."""
        return self._lrs(self.schedule(self.last_epoch))

    def _lrs(self, factor: float) -> List[float]:
        return [base_lr * factor * self.ft_factor for base_lr in self.base_lrs]

    def step(self, epoch: Optional[int] = None) -> None:
        """Advance by one optimizer update and write the new lr into every group."""
        if epoch is not None:
            raise TypeError("LearningRateScheduler.step() takes no epoch: it counts optimizer updates")
        self._step_count += 1
        self.last_epoch += 1
        self._apply_lrs(log=self.last_epoch > 1)

    def _apply_lrs(self, log: bool) -> None:
        k = self.last_epoch
        factor = self.schedule(k)
        lrs = self._lrs(factor)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs
        if self.momentum is not None:
            self._apply_momentum(self.momentum(k, factor))
        if self.weight_decay is not None:
            decay = self.weight_decay(k)
            for group in self.optimizer.param_groups:
                group["weight_decay"] = group["initial_weight_decay"] * decay
        if log and self._factor is not None and self._is_big_change(self._factor, factor):
            logger.info("%sChanging learning rate %.7f -> %.7f", self._log_prefix, self._factor * self.reference_lr,
                        factor * self.reference_lr)
        self._factor = factor

    def _apply_momentum(self, momentum: float) -> None:
        for group in self.optimizer.param_groups:
            if "betas" in group:
                group["betas"] = (momentum, group["betas"][1])
            else:
                group["momentum"] = momentum

    def _is_big_change(self, old: float, new: float) -> bool:
        # As Pet: the ratio of the two lrs beyond the threshold, and not a drop to (nearly) zero.
        if old == new or new * self.reference_lr <= 1e-7 or old <= 0:
            return False
        return max(new / old, old / new) > self.log_threshold

    def group_names(self) -> List[str]:
        """The names of the optimizer's groups, in order (their index where a group has no name)."""
        return [str(group.get("name", index)) for index, group in enumerate(self.optimizer.param_groups)]

    def state_dict(self) -> Dict[str, Any]:
        """The update count, the group names it applies to, and the last lrs (for inspection)."""
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count, "group_names": self.group_names(),
                "base_lrs": list(self.base_lrs), "last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Resume at the saved update count and rewrite every group's lr from its initial_lr."""
        saved, current = state_dict.get("group_names"), self.group_names()
        if saved is not None and list(saved) != current:
            raise ValueError(f"scheduler state was saved for param groups {list(saved)}, but the optimizer now "
                             f"has {current}; the model or the grouping rules changed since the checkpoint")
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        self.base_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]
        self._factor = None
        self._apply_lrs(log=False)
