"""`Optimizer`: builds a `torch.optim.Optimizer` from SOLVER.OPTIMIZER.

`Optimizer(model, cfg.SOLVER.OPTIMIZER).build()` validates the config, groups the parameters by the rules of
`param_groups`, constructs the configured class with the fastest kernels torch offers for it, and registers
gradient clipping as a step pre-hook. The returned object is the plain torch optimizer: nothing is subclassed
or swapped at run time.
"""
import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from pet.config.errors import ConfigError
from pet.config.solver import solver_defaults
from pet.config.validation import validate_optimizer_cfg
from pet.solver.gradient_guard import add_gradient_clipping
from pet.solver.fused_first_step import FusedFirstStepGuard, needs_first_step_guard
from pet.solver.lars import LARS
from pet.solver.optimizer_types import KEY_ARGUMENTS, OptimizerType, optimizer_type
from pet.solver.param_groups import build_param_groups
from pet.solver.report import format_param_groups

logger = logging.getLogger(__name__)


def optimizer_kwargs(kind: OptimizerType, cfg: Any, key: str = "SOLVER.OPTIMIZER") -> Dict[str, Any]:
    """The constructor arguments the config supplies to the class of `kind`, mapped by meaning.

    MOMENTUM goes to SGD, RMSprop, LARS and Muon, NESTEROV to SGD, LARS and Muon, BETAS and EPS to the Adam family,
    EPS to RMSprop, Adagrad, Adadelta and LARS (the capability table of `optimizer_types`). Weight decay and lr live
    in the param groups. A key changed from its default that the class does not take is logged as a warning
    rather than dropped silently.
    """
    defaults = solver_defaults().OPTIMIZER
    kwargs: Dict[str, Any] = {}
    for name, argument in KEY_ARGUMENTS.items():
        if name in kind.keys:
            kwargs[argument] = tuple(cfg[name]) if name == "BETAS" else cfg[name]
        elif cfg[name] != defaults[name]:
            reason = f" ({kind.unmapped[name]})" if name in kind.unmapped else ""
            logger.warning("%s.%s = %r is not used by %s%s", key, name, cfg[name], kind.cls.__name__, reason)
    if kind.cls is LARS:
        kwargs["trust_coefficient"] = cfg.LARS.TRUST_COEFFICIENT
    return kwargs


def check_supported(kind: OptimizerType, groups: List[Dict[str, Any]], key: str = "SOLVER.OPTIMIZER") -> None:
    """Refuse what the class cannot do instead of ignoring it: a non-zero weight decay for a class without one
    (Rprop), parameters other than 2-D matrices for a matrices-only class (Muon)."""
    name = kind.cls.__name__
    if not kind.weight_decay and any(group["weight_decay"] for group in groups):
        raise ConfigError(f"{key}.TYPE = {name} has no weight decay; set {key}.WEIGHT_DECAY, "
                          "WEIGHT_DECAY_BIAS, WEIGHT_DECAY_NORM and WEIGHT_DECAY_EMBED to 0")
    if kind.matrices_only:
        others = [(n, tuple(p.shape)) for group in groups for n, p in group["params"] if p.dim() != 2]
        if others:
            raise ConfigError(f"{key}.TYPE = {name} updates 2-D weight matrices only, and {len(others)} trainable "
                              f"parameters are not (e.g. {others[0][0]} of shape {others[0][1]}); give those to "
                              "another optimizer through SOLVER.OPTIMIZERS (named optimizers on MODULES)")


def supports_fused(kind: OptimizerType, groups: List[Dict[str, Any]]) -> bool:
    """Whether torch has fused kernels for the class and every parameter of `groups` (real floating point, a
    supported device). torch checks devices only at the first step, so the choice is made before construction."""
    return bool(kind.fused_devices) and all(
        p.is_floating_point() and p.device.type in kind.fused_devices for group in groups for _, p in group["params"])


def implementation_kwargs(kind: OptimizerType, groups: List[Dict[str, Any]], implementation: str,
                          key: str = "SOLVER.OPTIMIZER") -> Dict[str, Any]:
    """`fused` / `foreach` arguments for KERNELS.IMPLEMENTATION (AUTO: fused, else foreach, where available).

    Fused kernels update all tensors of a group in one kernel and are several times faster than torch's
    per-tensor default on CPU and CUDA alike (docs/benchmarks.md).
    """
    fused = supports_fused(kind, groups)
    if implementation == "AUTO":
        return {"fused": True} if fused else {"foreach": True} if kind.foreach else {}
    available = {"FUSED": fused, "FOREACH": kind.foreach, "FOR_LOOP": kind.foreach}[implementation]
    if not available:
        raise ConfigError(f"{key}.KERNELS.IMPLEMENTATION = {implementation!r} is not available for "
                          f"{kind.cls.__name__} with these parameters; use AUTO")
    return {"FUSED": {"fused": True}, "FOREACH": {"foreach": True}, "FOR_LOOP": {"foreach": False}}[implementation]


def gradient_guard_settings(cfg: Any) -> Optional[Tuple[str, float, float]]:
    """(clip type, clip value, norm type) of the step pre-hook for SOLVER.OPTIMIZER `cfg`: CLIP_GRADIENTS when it
    is enabled, else the bare non-finite check when NONFINITE.CHECK_GRADIENTS is on, else None."""
    clip = cfg.CLIP_GRADIENTS
    if clip.ENABLED:
        return clip.CLIP_TYPE.lower(), clip.CLIP_VALUE, clip.NORM_TYPE
    return ("none", math.inf, 2.0) if cfg.NONFINITE.CHECK_GRADIENTS else None


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
        kind = optimizer_type(self.cfg.TYPE, key=f"{self.key}.TYPE")
        groups = build_param_groups(self.model, self.cfg, self.modules)
        check_supported(kind, groups, self.key)
        kwargs = optimizer_kwargs(kind, self.cfg, self.key)
        kwargs.update(implementation_kwargs(kind, groups, self.cfg.KERNELS.IMPLEMENTATION.upper(), self.key))
        optimizer = construct_optimizer(kind.cls, groups, kwargs, key=f"{self.key}.TYPE")
        guard = gradient_guard_settings(self.cfg)
        if guard is not None:
            add_gradient_clipping(optimizer, *guard)
        if needs_first_step_guard(optimizer):
            FusedFirstStepGuard(optimizer)
        logger.info("Optimizer %s with %d parameter groups:\n%s", kind.cls.__name__, len(optimizer.param_groups),
                    format_param_groups(optimizer))
        return optimizer
