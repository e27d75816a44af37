"""SOLVER.SCHEDULER as plain values: the schedule of a validated config node, with epochs in updates.

Epoch units (TOTAL_EPOCHS, WARM_UP_EPOCHS) need the iterations per epoch, which come from the data: the policy's
keys that count updates (its declaration says which) are converted here, rounded, and checked again in updates, so
that two epoch milestones that round to one iteration, or a phase that rounds to nothing, are refused.
"""
import math
from typing import Any, Dict, List

import torch

from pet.config.rules import MAX_ITERATIONS
from pet.config.schema import invalid_value
from pet.config.solver_keys import SCHEDULER
from pet.errors import ConfigError
from pet.lr_policies import POLICIES, argument_name, lookup, map_counts, policy_arguments
from pet.solver.optimizers.schedule_free import is_schedule_free
from pet.solver.schedules.lr_schedule import LRSchedule
from pet.solver.schedules.scheduled_fields import MomentumSchedule, ScheduledField, WeightDecaySchedule


def uses_epochs(sched: Any) -> bool:
    """Whether a SCHEDULER node counts in epochs anywhere (and so needs the iterations per epoch)."""
    return sched.TOTAL_EPOCHS is not None or sched.WARM_UP_EPOCHS is not None


def to_iterations(value: Any, per_epoch: int) -> Any:
    """Epochs -> updates for a count, a list of counts, or CHAIN phases (POLICY, BEGIN, END)."""
    return map_counts(value, lambda count: int(round(count * per_epoch)))


def lr_schedule_from_cfg(solver_cfg: Any, iter_per_epoch: int = -1, prefix: str = "SOLVER") -> LRSchedule:
    """The pure schedule of the (validated) SOLVER node `solver_cfg`, every length in optimizer updates.

    Epoch units without `iter_per_epoch > 0`, and epoch keys that stop fitting the run once rounded to updates,
    are a `ConfigError`. `prefix` is the config key of `solver_cfg`, for error messages.
    """
    sched, key = solver_cfg.SCHEDULER, f"{prefix}.SCHEDULER"
    for name in ("TOTAL_EPOCHS", "WARM_UP_EPOCHS"):
        if sched[name] is not None and not iter_per_epoch > 0:
            raise ConfigError(f"{key}.{name} = {sched[name]!r} is in epochs and needs iter_per_epoch > 0 "
                              f"(got {iter_per_epoch}); set {key}.{name} to None to count in iterations")
    policy_name = sched.POLICY.upper()
    policy = POLICIES[policy_name]
    arguments = policy_arguments(sched)
    total = sched.TOTAL_ITERS
    if sched.TOTAL_EPOCHS is not None:
        total = sched.TOTAL_EPOCHS * iter_per_epoch
        arguments = _counts_in_iterations(sched, key, arguments, total, iter_per_epoch)
    if policy.own_rise:
        warmup = 0
    elif sched.WARM_UP_EPOCHS is None:
        warmup = sched.WARM_UP_ITERS
    else:
        warmup = to_iterations(sched.WARM_UP_EPOCHS, iter_per_epoch)
    for name, value in (("TOTAL_EPOCHS", total), ("WARM_UP_EPOCHS", warmup)):
        if value > MAX_ITERATIONS:
            raise ConfigError(f"{key}.{name} = {sched[name]!r} makes {value} iterations at {iter_per_epoch} per "
                              f"epoch; at most {MAX_ITERATIONS} are allowed")
    return LRSchedule(policy_name, total, arguments, warmup, sched.WARM_UP_FACTOR, sched.WARM_UP_METHOD.upper())


def _counts_in_iterations(sched: Any, key: str, arguments: Dict[str, Any], total: int,
                          iter_per_epoch: int) -> Dict[str, Any]:
    """The policy's counting keys converted from epochs, each checked again once rounded to updates."""
    policy = POLICIES[sched.POLICY.upper()]
    converted = dict(arguments)
    for name in policy.counts:
        value = to_iterations(lookup(sched, name), iter_per_epoch)
        rule = lookup(SCHEDULER, name).rule
        if name in policy.used_keys(arguments) and not rule.check(value):
            raise ConfigError(invalid_value(f"{key}.{name}", lookup(sched, name), rule.allowed)
                              + f" (at {iter_per_epoch} iterations per epoch they become {value})")
        converted[argument_name(name)] = value
    problem = policy.check(converted, total, f"{total} iterations") if policy.check else None
    if problem is not None:
        name, allowed = problem
        raise ConfigError(invalid_value(f"{key}.{name}", lookup(sched, name), allowed)
                          + f" (at {iter_per_epoch} iterations per epoch they become {converted[argument_name(name)]})")
    return converted


def scheduled_fields_from_cfg(optimizer: torch.optim.Optimizer, sched: Any, total_iters: int,
                              key: str) -> List[ScheduledField]:
    """The momentum and weight-decay schedules a SCHEDULER node asks for (none for their CONSTANT policies)."""
    fields: List[ScheduledField] = []
    momentum = sched.MOMENTUM
    if momentum.POLICY.upper() != "CONSTANT":
        if not all("momentum" in g or "betas" in g for g in optimizer.param_groups):
            raise ConfigError(f"{key}.MOMENTUM.POLICY = {momentum.POLICY!r} needs an optimizer with momentum or "
                              f"betas; {type(optimizer).__name__} has neither")
        fields.append(MomentumSchedule(momentum.POLICY.upper(), momentum.START, momentum.END, total_iters))
    if sched.WEIGHT_DECAY.POLICY.upper() == "COSINE":
        fields.append(WeightDecaySchedule(sched.WEIGHT_DECAY.END_FACTOR, total_iters))
    return fields


def scheduler_arguments(optimizer: torch.optim.Optimizer, solver_cfg: Any, iter_per_epoch: int = -1,
                        prefix: str = "SOLVER") -> Dict[str, Any]:
    """The keyword arguments of `ClosedFormScheduler` (all but the optimizer and start_iter) for the validated
    SOLVER node (or named optimizer entry) `solver_cfg`."""
    schedule = lr_schedule_from_cfg(solver_cfg, iter_per_epoch, prefix)
    if is_schedule_free(optimizer) and schedule.policy != "CONSTANT":
        raise ConfigError(f"{prefix}.SCHEDULER.POLICY = {solver_cfg.SCHEDULER.POLICY!r}: {type(optimizer).__name__} "
                          "is schedule-free and needs no decay; use POLICY CONSTANT (a warmup is allowed)")
    for group in optimizer.param_groups:
        if not math.isfinite(group["lr"] * solver_cfg.LR_SCALING.FT_FACTOR):
            raise ConfigError(f"the lr of param group {group.get('name', '?')} overflows to "
                              f"{group['lr'] * solver_cfg.LR_SCALING.FT_FACTOR}: {prefix}.OPTIMIZER.BASE_LR = "
                              f"{solver_cfg.OPTIMIZER.BASE_LR!r} x its factors x {prefix}.LR_SCALING.FT_FACTOR = "
                              f"{solver_cfg.LR_SCALING.FT_FACTOR!r}")
    return {"schedule": schedule, "ft_factor": solver_cfg.LR_SCALING.FT_FACTOR,
            "fields": scheduled_fields_from_cfg(optimizer, solver_cfg.SCHEDULER, schedule.total_iters,
                                                f"{prefix}.SCHEDULER"),
            "log_threshold": solver_cfg.SCHEDULER.LOG_LR_CHANGE_THRESHOLD,
            "log_prefix": "" if prefix == "SOLVER" else f"{prefix}: "}
