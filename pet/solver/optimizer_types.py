"""Optimizer classes by config name: SGD, ADAMW, ADAM, RMSPROP, LARS, or any `torch.optim` class (case-insensitive)."""
import inspect
from typing import Dict, Type

import torch

from pet.config.errors import ConfigError
from pet.solver.lars import LARS

# LBFGS needs a closure and a single param group, which a solver of grouped parameters cannot give it.
_UNSUPPORTED = {"LBFGS"}


def optimizer_types() -> Dict[str, Type[torch.optim.Optimizer]]:
    """All optimizer classes a config may name, keyed by upper-case name."""
    types = {
        name.upper(): cls
        for name, cls in vars(torch.optim).items()
        if inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer
        and name.upper() not in _UNSUPPORTED
    }
    types["LARS"] = LARS
    return types


def optimizer_class(name: str, key: str = "SOLVER.OPTIMIZER.TYPE") -> Type[torch.optim.Optimizer]:
    """Resolve a config name to its class; an unknown name is a `ConfigError` listing the allowed names."""
    types = optimizer_types()
    cls = types.get(str(name).upper())
    if cls is None:
        raise ConfigError(f"{key} = {name!r} is invalid; allowed: {' | '.join(sorted(types))} (case-insensitive)")
    return cls
