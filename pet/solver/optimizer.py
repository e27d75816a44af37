"""`Optimizer`: builds a `torch.optim.Optimizer` from SOLVER.OPTIMIZER (SPEC §1-§3, §5).

`Optimizer(model, cfg.SOLVER.OPTIMIZER).build()` validates the config, groups the parameters by the rules of
`param_groups`, constructs the configured class with the fastest kernels torch offers for it, and registers
gradient clipping as a step pre-hook. The returned object is the plain torch optimizer: nothing is subclassed
or swapped at run time.
"""
import inspect
import logging
from typing import Any, Dict, List, Sequence

import torch
from torch import nn

from pet.config.errors import ConfigError
from pet.config.solver import solver_defaults
from pet.config.validation import validate_optimizer_cfg
from pet.solver.clip import add_gradient_clipping
from pet.solver.optimizer_types import optimizer_class
from pet.solver.param_groups import build_param_groups
from pet.solver.report import format_param_groups

logger = logging.getLogger(__name__)


# Constructor argument -> the SOLVER.OPTIMIZER key that supplies it.
_KWARG_KEYS = {"momentum": "MOMENTUM", "nesterov": "NESTEROV", "betas": "BETAS", "eps": "EPS"}


def optimizer_kwargs(cls: type, cfg: Any, key: str = "SOLVER.OPTIMIZER") -> Dict[str, Any]:
    """The constructor arguments the config supplies to `cls`: those of its signature, nothing else.

    MOMENTUM goes to classes that take `momentum` (SGD, RMSprop, LARS), BETAS and EPS to those that take
    `betas` / `eps` (the Adam family), NESTEROV to SGD and LARS. Weight decay and lr live in the param groups.
    A key changed from its default that `cls` cannot use is logged as a warning rather than dropped silently.
    """
    accepted = inspect.signature(cls.__init__).parameters
    defaults = solver_defaults().OPTIMIZER
    kwargs = {}
    for arg, name in _KWARG_KEYS.items():
        value = tuple(cfg[name]) if name == "BETAS" else cfg[name]
        if arg in accepted:
            kwargs[arg] = value
        elif cfg[name] != defaults[name]:
            logger.warning("%s.%s = %r is not used by %s", key, name, cfg[name], cls.__name__)
    if "trust_coefficient" in accepted:
        kwargs["trust_coefficient"] = cfg.LARS.TRUST_COEFFICIENT
    return kwargs


def check_weight_decay_supported(cls: type, groups: List[Dict[str, Any]], key: str = "SOLVER.OPTIMIZER") -> None:
    """Refuse a non-zero weight decay for a class that has none (e.g. Rprop) instead of ignoring it."""
    if "weight_decay" in inspect.signature(cls.__init__).parameters:
        return
    if any(group["weight_decay"] for group in groups):
        raise ConfigError(f"{key}.TYPE = {cls.__name__} has no weight decay; set {key}.WEIGHT_DECAY, "
                          "WEIGHT_DECAY_BIAS, WEIGHT_DECAY_NORM and WEIGHT_DECAY_EMBED to 0")


# Where torch has fused kernels for a class: they update all tensors of a group in one kernel and are several
# times faster than torch's per-tensor default on CPU and CUDA alike (docs/benchmarks.md). torch checks devices
# only at the first step, so the choice is made here, before construction.
FUSED_DEVICES = {
    torch.optim.SGD: {"cpu", "cuda", "mps", "xpu"},
    torch.optim.Adam: {"cpu", "cuda", "mps", "xpu"},
    torch.optim.AdamW: {"cpu", "cuda", "mps", "xpu"},
    torch.optim.Adagrad: {"cpu"},
}


def supports_fused(cls: type, groups: List[Dict[str, Any]]) -> bool:
    """Whether `cls` has fused kernels for every parameter of `groups` (real floating point, supported device)."""
    devices = FUSED_DEVICES.get(cls, set())
    return bool(devices) and all(
        p.is_floating_point() and p.device.type in devices for group in groups for _, p in group["params"])


def implementation_kwargs(cls: type, groups: List[Dict[str, Any]], implementation: str,
                          key: str = "SOLVER.OPTIMIZER") -> Dict[str, Any]:
    """`fused` / `foreach` arguments for KERNELS.IMPLEMENTATION (AUTO: fused, else foreach, where available)."""
    accepted = inspect.signature(cls.__init__).parameters
    fused, foreach = supports_fused(cls, groups), "foreach" in accepted
    if implementation == "AUTO":
        return {"fused": True} if fused else {"foreach": True} if foreach else {}
    available = {"FUSED": fused, "FOREACH": foreach, "FOR_LOOP": foreach}[implementation]
    if not available:
        raise ConfigError(f"{key}.KERNELS.IMPLEMENTATION = {implementation!r} is not available for {cls.__name__} "
                          f"with these parameters; use AUTO")
    return {"FUSED": {"fused": True}, "FOREACH": {"foreach": True}, "FOR_LOOP": {"foreach": False}}[implementation]


def construct_optimizer(cls: type, groups: List[Dict[str, Any]], kwargs: Dict[str, Any],
                        key: str = "SOLVER.OPTIMIZER.TYPE") -> torch.optim.Optimizer:
    """Instantiate `cls` over `groups` with `kwargs`; torch's refusals become a `ConfigError` naming `key`."""
    try:
        return cls(groups, **kwargs)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ConfigError(f"{key} = {cls.__name__} cannot optimize this model: {e}") from None


class Optimizer:
    """Builder of the training optimizer from SOLVER.OPTIMIZER.

    Args:
        model: the module whose trainable parameters are optimized.
        cfg: the SOLVER.OPTIMIZER node; it is validated here, before any work.
        modules: dotted names of the submodules to optimize (all of the model when empty); parameter names and
            the rules still see the full names.
        key: the config key of `cfg`, for error messages (SOLVER.OPTIMIZERS.<name>.OPTIMIZER for named ones).
    """

    def __init__(self, model: nn.Module, cfg: Any, modules: Sequence[str] = (),
                 key: str = "SOLVER.OPTIMIZER") -> None:
        validate_optimizer_cfg(cfg, prefix=key)
        self.model = model
        self.cfg = cfg
        self.modules = tuple(modules)
        self.key = key

    def build(self) -> torch.optim.Optimizer:
        """Return a `torch.optim.Optimizer` with merged param groups and clipping, as configured."""
        cls = optimizer_class(self.cfg.TYPE, key=f"{self.key}.TYPE")
        groups = build_param_groups(self.model, self.cfg, self.modules)
        check_weight_decay_supported(cls, groups, self.key)
        kwargs = optimizer_kwargs(cls, self.cfg, self.key)
        kwargs.update(implementation_kwargs(cls, groups, self.cfg.KERNELS.IMPLEMENTATION.upper(), self.key))
        optimizer = construct_optimizer(cls, groups, kwargs, key=f"{self.key}.TYPE")
        add_gradient_clipping(optimizer, self.cfg)
        logger.info("Optimizer %s with %d parameter groups:\n%s", cls.__name__, len(optimizer.param_groups),
                    format_param_groups(optimizer))
        return optimizer
