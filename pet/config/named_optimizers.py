"""Named optimizers (SOLVER.OPTIMIZERS): each entry laid over copies of SOLVER.OPTIMIZER and SOLVER.SCHEDULER.

An entry selects the parameters it trains: by module (MODULES: dotted module names), by parameter name (PARAMS:
regular expressions that must match a full name) and by number of dimensions (MIN_NDIM, MAX_NDIM; 0: no bound).
Every selector an entry gives must hold, so they narrow each other (`MODULES: (backbone,)` with `MIN_NDIM: 2` is
the backbone's matrices and kernels); an entry that gives none takes every parameter no other entry takes (at most
one such entry). Which parameter goes where is decided on the model (`pet.solver.param_groups.routes`): one that
two entries select, or an entry that selects none, is an error there. An entry also names the losses whose sum it
minimises (LOSSES; all when empty), how often it steps (STEP_INTERVAL, in iterations), and the OPTIMIZER /
SCHEDULER keys that differ from the top-level ones. Without entries the run has one optimizer: the top-level one,
on the whole model.
"""
from typing import Any, Dict, List

from pet.config.node import CfgNode, shown
from pet.config.rules import is_int, is_names, is_regex
from pet.config.schema import invalid_value
from pet.errors import ConfigError

SELECTORS = ("MODULES", "PARAMS", "MIN_NDIM", "MAX_NDIM")
ENTRY_KEYS = (*SELECTORS, "LOSSES", "STEP_INTERVAL", "OPTIMIZER", "SCHEDULER")
MAX_NDIM_BOUND = 8  # more dimensions than any parameter of a vision model has


def optimizer_entries(solver: Any) -> Dict[str, CfgNode]:
    """name -> a node with OPTIMIZER, SCHEDULER, LR_SCALING, the selectors, LOSSES, STEP_INTERVAL.

    The entries' own keys are checked here (their OPTIMIZER / SCHEDULER values by `validate_solver_cfg`). The
    single-optimizer case is the entry "" that selects nothing: every parameter, every loss.
    """
    if not solver.OPTIMIZERS:
        return {"": _entry(solver.OPTIMIZER, solver.SCHEDULER, solver.LR_SCALING, {}, (), 1)}
    entries, rest = {}, []
    for name, node in solver.OPTIMIZERS.items():
        key = f"SOLVER.OPTIMIZERS.{name}"
        if not isinstance(node, dict):
            raise ConfigError(f"{key} = {shown(node)} must be a group of keys: {', '.join(ENTRY_KEYS)}")
        for sub in node:
            if sub not in ENTRY_KEYS:
                raise ConfigError(f"unknown config key {key}.{sub}; allowed: {', '.join(ENTRY_KEYS)}")
        selectors = _selectors(node, key)
        if not any(selectors.values()):
            rest.append(key)
        losses, interval = node.get("LOSSES", ()), node.get("STEP_INTERVAL", 1)
        if not is_names(losses):
            raise ConfigError(invalid_value(f"{key}.LOSSES", losses, "a list of loss names (empty: all losses)"))
        if not (is_int(interval) and interval >= 1):
            raise ConfigError(invalid_value(f"{key}.STEP_INTERVAL", interval, "an integer >= 1"))
        optimizer, scheduler = solver.OPTIMIZER.clone(), solver.SCHEDULER.clone()
        optimizer.defrost()  # clones of a frozen run config
        scheduler.defrost()
        optimizer.merge_from_other_cfg(node.get("OPTIMIZER", {}), prefix=f"{key}.OPTIMIZER.")
        scheduler.merge_from_other_cfg(node.get("SCHEDULER", {}), prefix=f"{key}.SCHEDULER.")
        entries[name] = _entry(optimizer, scheduler, solver.LR_SCALING, selectors, tuple(losses), interval)
    check_one_rest(rest)
    return entries


def check_one_rest(keys: List[str]) -> None:
    """At most one entry may select nothing (and so take the rest); `keys`: the config keys of such entries."""
    if len(keys) > 1:
        raise ConfigError(f"{keys[0]} and {keys[1]} both select no parameters, so both would take the rest; give "
                          "one of them MODULES, PARAMS, MIN_NDIM or MAX_NDIM")


def _selectors(node: Any, key: str) -> Dict[str, Any]:
    """An entry's MODULES, PARAMS, MIN_NDIM and MAX_NDIM, checked."""
    modules, params = node.get("MODULES", ()), node.get("PARAMS", ())
    low, high = node.get("MIN_NDIM", 0), node.get("MAX_NDIM", 0)
    if not is_names(modules):
        raise ConfigError(invalid_value(f"{key}.MODULES", modules, "a list of module names"))
    if not (isinstance(params, (list, tuple)) and all(is_regex(p) and p for p in params)):
        raise ConfigError(invalid_value(f"{key}.PARAMS", params, "a list of regular expressions (full match on "
                                                                 "parameter names)"))
    for name, value in (("MIN_NDIM", low), ("MAX_NDIM", high)):
        if not (is_int(value) and 0 <= value <= MAX_NDIM_BOUND):
            raise ConfigError(invalid_value(f"{key}.{name}", value, f"an integer in [0, {MAX_NDIM_BOUND}] (0: no "
                                                                     "bound)"))
    if low and high and low > high:
        raise ConfigError(f"{key}.MIN_NDIM = {low} is above {key}.MAX_NDIM = {high}: no parameter has such a shape")
    return {"MODULES": tuple(modules), "PARAMS": tuple(params), "MIN_NDIM": low, "MAX_NDIM": high}


def _entry(optimizer: Any, scheduler: Any, scaling: Any, selectors: Dict[str, Any], losses: tuple,
           interval: int) -> CfgNode:
    entry = CfgNode()
    entry.OPTIMIZER, entry.SCHEDULER, entry.LR_SCALING = optimizer, scheduler, scaling
    entry.MODULES, entry.PARAMS = selectors.get("MODULES", ()), selectors.get("PARAMS", ())
    entry.MIN_NDIM, entry.MAX_NDIM = selectors.get("MIN_NDIM", 0), selectors.get("MAX_NDIM", 0)
    entry.LOSSES, entry.STEP_INTERVAL = losses, interval
    return entry
