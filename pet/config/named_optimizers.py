"""Named optimizers (SOLVER.OPTIMIZERS): each entry laid over copies of SOLVER.OPTIMIZER and SOLVER.SCHEDULER.

An entry names the top-level modules it trains (MODULES), the losses whose sum it minimises (LOSSES; all when
empty), how often it steps (STEP_INTERVAL, in iterations), and any OPTIMIZER / SCHEDULER keys that differ from
the top-level ones. Without entries the run has one optimizer: the top-level one, on the whole model.
"""
from typing import Any, Dict

from pet.config.node import CfgNode, shown
from pet.config.rules import is_int, is_names
from pet.config.schema import invalid_value
from pet.errors import ConfigError

ENTRY_KEYS = ("MODULES", "LOSSES", "STEP_INTERVAL", "OPTIMIZER", "SCHEDULER")


def optimizer_entries(solver: Any) -> Dict[str, CfgNode]:
    """name -> a node with OPTIMIZER, SCHEDULER, LR_SCALING, MODULES, LOSSES, STEP_INTERVAL.

    The entries' own keys are checked here (their OPTIMIZER / SCHEDULER values by `validate_solver_cfg`). The
    single-optimizer case is the entry "" on every module and every loss.
    """
    if not solver.OPTIMIZERS:
        return {"": _entry(solver.OPTIMIZER, solver.SCHEDULER, solver.LR_SCALING, (), (), 1)}
    entries, owners = {}, {}
    for name, node in solver.OPTIMIZERS.items():
        key = f"SOLVER.OPTIMIZERS.{name}"
        if not isinstance(node, dict):
            raise ConfigError(f"{key} = {shown(node)} must be a group of keys: {', '.join(ENTRY_KEYS)}")
        for sub in node:
            if sub not in ENTRY_KEYS:
                raise ConfigError(f"unknown config key {key}.{sub}; allowed: {', '.join(ENTRY_KEYS)}")
        modules, losses, interval = node.get("MODULES", ()), node.get("LOSSES", ()), node.get("STEP_INTERVAL", 1)
        if not is_names(modules) or not modules:
            raise ConfigError(invalid_value(f"{key}.MODULES", modules, "a non-empty list of module names"))
        if not is_names(losses):
            raise ConfigError(invalid_value(f"{key}.LOSSES", losses, "a list of loss names (empty: all losses)"))
        if not (is_int(interval) and interval >= 1):
            raise ConfigError(invalid_value(f"{key}.STEP_INTERVAL", interval, "an integer >= 1"))
        for module in modules:
            for owned, owner in owners.items():
                if _nested(module, owned):
                    raise ConfigError(f"{key}.MODULES: module {module!r} overlaps {owned!r}, which is already trained "
                                      f"by SOLVER.OPTIMIZERS.{owner}; a parameter belongs to one optimizer")
            owners[module] = name
        optimizer, scheduler = solver.OPTIMIZER.clone(), solver.SCHEDULER.clone()
        optimizer.defrost()  # clones of a frozen run config
        scheduler.defrost()
        optimizer.merge_from_other_cfg(node.get("OPTIMIZER", {}), prefix=f"{key}.OPTIMIZER.")
        scheduler.merge_from_other_cfg(node.get("SCHEDULER", {}), prefix=f"{key}.SCHEDULER.")
        entries[name] = _entry(optimizer, scheduler, solver.LR_SCALING, tuple(modules), tuple(losses), interval)
    return entries


def _nested(a: str, b: str) -> bool:
    """Whether module `a` is module `b` or lies inside it, or the other way round (dotted names)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _entry(optimizer: Any, scheduler: Any, scaling: Any, modules: tuple, losses: tuple, interval: int) -> CfgNode:
    entry = CfgNode()
    entry.OPTIMIZER, entry.SCHEDULER, entry.LR_SCALING = optimizer, scheduler, scaling
    entry.MODULES, entry.LOSSES, entry.STEP_INTERVAL = modules, losses, interval
    return entry
