"""Validation of the config from the config alone: every key against its table, then the rules across keys.

`validate_cfg` runs once per run, before any work. What needs the model, the data or torch (an optimizer class,
module names, epochs rounded to iterations) is checked by the builders, with the same `ConfigError`s.
"""
from typing import Any

from pet.config.defaults import ROOT
from pet.config.named_optimizers import optimizer_entries
from pet.config.node import shown
from pet.config.schema import check_section, invalid_value
from pet.config.solver_keys import OPTIMIZER, SCHEDULER, SOLVER
from pet.errors import ConfigError
from pet.lr_policies import POLICIES, lookup, policy_arguments

WARMUP_KEYS = ("WARM_UP_ITERS", "WARM_UP_EPOCHS", "WARM_UP_FACTOR", "WARM_UP_METHOD")


def validate_optimizer_cfg(opt: Any, prefix: str = "SOLVER.OPTIMIZER") -> None:
    """Check every key of SOLVER.OPTIMIZER (and its sub-nodes), and the rules between them."""
    check_section(opt, OPTIMIZER, prefix)
    optimizer_rules(opt, prefix)


def optimizer_rules(opt: Any, prefix: str) -> None:
    """The rules between SOLVER.OPTIMIZER keys."""
    if opt.NESTEROV and opt.MOMENTUM == 0:
        raise ConfigError(f"{prefix}.NESTEROV = True needs {prefix}.MOMENTUM > 0 (got 0)")


def validate_scheduler_cfg(sched: Any, prefix: str = "SOLVER.SCHEDULER") -> None:
    """Check every key of SOLVER.SCHEDULER, and the rules between them."""
    check_section(sched, SCHEDULER, prefix)
    scheduler_rules(sched, prefix)


def scheduler_rules(sched: Any, prefix: str) -> None:
    """The rules between SOLVER.SCHEDULER keys: CHAIN.PHASES exactly with CHAIN, no warmup for policies with their
    own rise, the policy's keys against the run length (in the run's units)."""
    policy = POLICIES[sched.POLICY.upper()]
    if bool(sched.CHAIN.PHASES) != (sched.POLICY.upper() == "CHAIN"):
        raise ConfigError(f"{prefix}.CHAIN.PHASES = {shown(tuple(sched.CHAIN.PHASES))} is used exactly when "
                          f"{prefix}.POLICY is CHAIN (POLICY is {sched.POLICY!r})")
    if policy.own_rise:
        check_no_warmup(sched, prefix)
    total_key = "TOTAL_ITERS" if sched.TOTAL_EPOCHS is None else "TOTAL_EPOCHS"
    check_policy_keys(sched, prefix, sched[total_key], f"{prefix}.{total_key} = {sched[total_key]}")


def check_policy_keys(sched: Any, prefix: str, total: float, total_name: str) -> None:
    """The policy's own check of its keys against the run length `total` (named `total_name` in messages)."""
    policy = POLICIES[sched.POLICY.upper()]
    problem = policy.check(policy_arguments(sched), total, total_name) if policy.check else None
    if problem is not None:
        key, allowed = problem
        raise ConfigError(invalid_value(f"{prefix}.{key}", lookup(sched, key), allowed))


def check_no_warmup(sched: Any, prefix: str) -> None:
    """ONE_CYCLE and NOAM have their own rise, so no generic warmup multiplies them: a warmup key set to anything
    but its default (or WARM_UP_ITERS 0) is a `ConfigError` rather than a warmup silently dropped."""
    for key in WARMUP_KEYS:
        default = SCHEDULER[key].default
        if sched[key] != default and not (key == "WARM_UP_ITERS" and sched[key] == 0):
            raise ConfigError(f"{prefix}.{key} = {shown(sched[key])} is not used with {prefix}.POLICY = "
                              f"{sched.POLICY!r}, which rises from its own start lr; leave {prefix}.{key} at its "
                              f"default {default!r}")


def validate_solver_cfg(solver: Any) -> None:
    """Check the whole SOLVER tree, named optimizers included."""
    check_section(solver, SOLVER, "SOLVER")
    solver_rules(solver)


def solver_rules(solver: Any) -> None:
    """The rules between SOLVER keys, and every key of each named optimizer (their own keys laid over the
    top-level ones)."""
    optimizer_rules(solver.OPTIMIZER, "SOLVER.OPTIMIZER")
    scheduler_rules(solver.SCHEDULER, "SOLVER.SCHEDULER")
    for name, entry in optimizer_entries(solver).items():
        if name:
            validate_optimizer_cfg(entry.OPTIMIZER, prefix=f"SOLVER.OPTIMIZERS.{name}.OPTIMIZER")
            validate_scheduler_cfg(entry.SCHEDULER, prefix=f"SOLVER.OPTIMIZERS.{name}.SCHEDULER")


def validate_cfg(cfg: Any) -> None:
    """Check the whole config: every key of its tables, then the rules across keys."""
    check_section(cfg, ROOT, "")
    detection = cfg.MODEL.DETECTION
    if detection.MAX_SIZE < detection.MIN_SIZE:
        raise ConfigError(invalid_value("MODEL.DETECTION.MAX_SIZE", detection.MAX_SIZE,
                                        f"an integer >= MODEL.DETECTION.MIN_SIZE = {detection.MIN_SIZE}"))
    if cfg.DATA.DATASET == "image_folder" and not cfg.DATA.ROOT:
        raise ConfigError("DATA.ROOT is empty; DATA.DATASET = 'image_folder' needs a folder with train/ and val/")
    if cfg.TRAIN.COMPILE and cfg.DISTRIBUTED.STRATEGY.upper() == "FSDP":
        raise ConfigError("TRAIN.COMPILE = True is not supported with DISTRIBUTED.STRATEGY = 'FSDP' (torch.compile "
                          "of the whole sharded model); use DDP, or leave TRAIN.COMPILE off")
    early_stop_rules(cfg.TRAIN)
    solver_rules(cfg.SOLVER)


def early_stop_rules(train: Any) -> None:
    """TRAIN.EARLY_STOP counts periodic evaluations of a named result: it needs both."""
    patience = train.EARLY_STOP.PATIENCE
    if patience and not train.EVAL_PERIOD:
        raise ConfigError(f"TRAIN.EARLY_STOP.PATIENCE = {patience} needs TRAIN.EVAL_PERIOD > 0 (got 0): early "
                          "stopping counts periodic evaluations; set EVAL_PERIOD, or PATIENCE 0 (off)")
    if patience and not (train.EARLY_STOP.METRIC or train.BEST_METRIC):
        raise ConfigError(f"TRAIN.EARLY_STOP.PATIENCE = {patience} needs a result to watch: set "
                          "TRAIN.EARLY_STOP.METRIC (or TRAIN.BEST_METRIC), e.g. val/accuracy or val/loss")
