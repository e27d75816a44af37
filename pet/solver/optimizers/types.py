"""Optimizer classes by config name, each with what it takes by meaning (a capability table, as timm's factory).

SOLVER.OPTIMIZER.TYPE names SGD, ADAMW, ADAM, RMSPROP, LARS or any `torch.optim` class (case-insensitive), or the
import path of an optimizer class of another package (`lion_pytorch.Lion`, `schedulefree.AdamWScheduleFree`). A
class's entry says which config keys reach its constructor (MOMENTUM, NESTEROV, BETAS, EPS), whether it has a
weight decay, where torch has fused kernels for it, whether it takes `foreach`, and whether it updates 2-D
matrices only. Keys are mapped by meaning, not by argument name alone: Adafactor's `eps` is a pair of its own and
Muon's `eps` guards its orthogonalisation, so neither receives EPS (Adam's denominator term).

A class missing from the table (one added by a later torch, or one of another package) gets an entry read from its
signature: an argument counts as a key's when its default has the key's form (a float momentum or eps, a pair of
betas).
"""
import inspect
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Tuple

import torch

from pet.errors import ConfigError
from pet.imports import import_attribute, is_import_path
from pet.solver.optimizers.lars import LARS

# Constructor argument of each SOLVER.OPTIMIZER key that a class may take.
KEY_ARGUMENTS = {"MOMENTUM": "momentum", "NESTEROV": "nesterov", "BETAS": "betas", "EPS": "eps"}
_FUSED_EVERYWHERE = frozenset({"cpu", "cuda", "mps", "xpu"})


@dataclass(frozen=True)
class OptimizerType:
    """An optimizer class and what it takes.

    Attributes:
        cls: the class.
        keys: the SOLVER.OPTIMIZER keys passed to its constructor (see KEY_ARGUMENTS).
        weight_decay: whether it has a weight decay (a non-zero decay for one without is refused).
        fused_devices: device types where torch has fused kernels for it.
        fused_sharded: whether those kernels also take FSDP2's sharded parameters (DTensors).
        foreach: whether it takes `foreach` (torch's multi-tensor kernels).
        matrices_only: whether it updates 2-D matrices only (Muon).
        unmapped: key -> why it is not passed although the class has an argument of that name (logged when
            the key is changed).
    """

    cls: type
    keys: Tuple[str, ...] = ()
    weight_decay: bool = True
    fused_devices: FrozenSet[str] = frozenset()
    fused_sharded: bool = False
    foreach: bool = True
    matrices_only: bool = False
    unmapped: Dict[str, str] = field(default_factory=dict)


_ADAM_LIKE = ("BETAS", "EPS")
TABLE: Dict[str, OptimizerType] = {
    "SGD": OptimizerType(torch.optim.SGD, ("MOMENTUM", "NESTEROV"), fused_devices=_FUSED_EVERYWHERE),
    "ADAM": OptimizerType(torch.optim.Adam, _ADAM_LIKE, fused_devices=_FUSED_EVERYWHERE, fused_sharded=True),
    "ADAMW": OptimizerType(torch.optim.AdamW, _ADAM_LIKE, fused_devices=_FUSED_EVERYWHERE, fused_sharded=True),
    "ADAMAX": OptimizerType(torch.optim.Adamax, _ADAM_LIKE),
    "NADAM": OptimizerType(torch.optim.NAdam, _ADAM_LIKE),
    "RADAM": OptimizerType(torch.optim.RAdam, _ADAM_LIKE),
    "RMSPROP": OptimizerType(torch.optim.RMSprop, ("MOMENTUM", "EPS")),
    "ADAGRAD": OptimizerType(torch.optim.Adagrad, ("EPS",), fused_devices=frozenset({"cpu"})),
    "ADADELTA": OptimizerType(torch.optim.Adadelta, ("EPS",)),
    "ASGD": OptimizerType(torch.optim.ASGD),
    "RPROP": OptimizerType(torch.optim.Rprop, weight_decay=False),
    "ADAFACTOR": OptimizerType(torch.optim.Adafactor, unmapped={"EPS": "its eps is a pair of its own"}),
    "MUON": OptimizerType(torch.optim.Muon, ("MOMENTUM", "NESTEROV"), foreach=False, matrices_only=True,
                          unmapped={"EPS": "its eps guards the Newton-Schulz orthogonalisation"}),
    "LARS": OptimizerType(LARS, ("MOMENTUM", "NESTEROV", "EPS"), foreach=False),
}

# Classes a solver of grouped dense parameters cannot drive, and why.
UNSUPPORTED = {
    "LBFGS": "it needs a closure and a single param group",
    "SPARSEADAM": "it needs sparse gradients (nn.Embedding(sparse=True)) for every parameter",
}


def _has_form(parameter: inspect.Parameter, key: str) -> bool:
    default = parameter.default
    if key == "BETAS":
        return isinstance(default, tuple) and len(default) == 2 and all(isinstance(b, float) for b in default)
    if key == "NESTEROV":
        return isinstance(default, bool)
    return isinstance(default, float) and not isinstance(default, bool)


def type_from_signature(cls: type) -> OptimizerType:
    """An entry for a class outside the table, read from its constructor's signature."""
    parameters = inspect.signature(cls.__init__).parameters
    keys = tuple(key for key, argument in KEY_ARGUMENTS.items()
                 if argument in parameters and _has_form(parameters[argument], key))
    unmapped = {key: f"its {argument} has another form" for key, argument in KEY_ARGUMENTS.items()
                if argument in parameters and key not in keys}
    return OptimizerType(cls, keys, weight_decay="weight_decay" in parameters, foreach="foreach" in parameters,
                         unmapped=unmapped)


def muon_for_kernels(key: str = "SOLVER.OPTIMIZER.TYPE") -> OptimizerType:
    """The Muon that takes convolution kernels too: timm's, which flattens a kernel to (out, in x kh x kw) as the
    airbench recipe does, and with torch's Newton-Schulz coefficients updates a 2-D matrix exactly as
    `torch.optim.Muon` does (torch's takes matrices only). timm is an extra: without it, one error line."""
    try:
        from timm.optim import Muon
    except ImportError:
        raise ConfigError(f"{key} = MUON on convolution kernels needs timm's Muon: pip install 'pet-solver[timm]' "
                          "(timm); or route only 2-D matrices to it (MAX_NDIM 2)") from None
    return OptimizerType(Muon, ("MOMENTUM", "NESTEROV"), foreach=False,
                         unmapped={"EPS": "its eps guards the Newton-Schulz orthogonalisation"})


def optimizer_types() -> Dict[str, OptimizerType]:
    """Every optimizer a config may name, keyed by upper-case name."""
    types = dict(TABLE)
    for name, cls in vars(torch.optim).items():
        if (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer
                and name.upper() not in types and name.upper() not in UNSUPPORTED):
            types[name.upper()] = type_from_signature(cls)
    return types


def imported_type(path: str, key: str = "SOLVER.OPTIMIZER.TYPE") -> OptimizerType:
    """The entry of an optimizer class of another package, named by its import path (`lion_pytorch.Lion`,
    `schedulefree.AdamWScheduleFree`, `pkg.module:Class`), read from its signature."""
    cls = import_attribute(path, key)
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"{key} = {path!r} is not a torch.optim.Optimizer class")
    return type_from_signature(cls)


def optimizer_type(name: str, key: str = "SOLVER.OPTIMIZER.TYPE") -> OptimizerType:
    """Resolve a config name (or an import path) to its entry; an unknown or unsupported name is a
    `ConfigError`."""
    if is_import_path(name):
        return imported_type(str(name), key)
    upper = str(name).upper()
    if upper in UNSUPPORTED:
        raise ConfigError(f"{key} = {name!r} is not supported: {UNSUPPORTED[upper]}")
    types = optimizer_types()
    if upper not in types:
        raise ConfigError(f"{key} = {name!r} is invalid; allowed: {' | '.join(sorted(types))} (case-insensitive)")
    return types[upper]

