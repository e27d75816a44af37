"""The training optimizer: `build_optimizer` from plain settings, and `Optimizer`, its SOLVER.OPTIMIZER adapter.

`build_optimizer(model, OptimizerSpec(...))` groups the parameters by the rules of `param_groups`, constructs the
class with the fastest kernels torch offers for it, and registers the gradient guard (clipping and the non-finite
check) as a step pre-hook. `Optimizer(model, cfg.SOLVER.OPTIMIZER).build()` validates the config node, reads it
into an `OptimizerSpec` (`optimizer_spec`), and calls it. The returned object is the plain torch optimizer:
nothing is subclassed or swapped at run time.
"""
import inspect
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from pet.config import get_cfg, validate_optimizer_cfg
from pet.config.node import shown
from pet.errors import ConfigError
from pet.solver.optimizers.fused_kernels import FusedFirstStepGuard, needs_first_step_guard
from pet.solver.optimizers.guard import GradientGuard, add_gradient_guard
from pet.solver.optimizers.lars import LARS
from pet.solver.optimizers.types import KEY_ARGUMENTS, OptimizerType, muon_for_kernels, optimizer_type
from pet.solver.param_groups.layer_decay import UnsupportedModel
from pet.solver.param_groups.report import format_param_groups
from pet.solver.param_groups.rules import GroupRules, build_param_groups, in_backbone

logger = logging.getLogger(__name__)

# (clip type, clip value, norm type) of the gradient guard: `none` is the non-finite check alone.
GuardSettings = Tuple[str, float, float]


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything `build_optimizer` needs, as plain values.

    Attributes:
        kind: the class and what it takes (`optimizer_types.optimizer_type(name)`).
        rules: the grouping rules (lrs and weight decays by kind, backbone, overrides, layer decay).
        kwargs: further constructor arguments (momentum, betas, eps, ...); lr and weight decay are the groups'.
        implementation: AUTO (fused, else foreach, where torch has them), FUSED, FOREACH or FOR_LOOP.
        guard: the gradient guard's settings, or None for no step pre-hook at all.
    """

    kind: OptimizerType
    rules: GroupRules
    kwargs: Dict[str, Any] = field(default_factory=dict)
    implementation: str = "AUTO"
    guard: Optional[GuardSettings] = ("none", math.inf, 2.0)


def check_supported(kind: OptimizerType, groups: List[Dict[str, Any]], key: str = "SOLVER.OPTIMIZER") -> None:
    """Refuse what the class cannot do instead of ignoring it: a non-zero weight decay for a class without one
    (Rprop); for Muon, parameters that are not matrices or convolution kernels (norms, biases, tokens) and
    parameters sharded by FSDP (its orthogonalisation needs whole matrices)."""
    name = kind.cls.__name__
    if not kind.weight_decay and any(group["weight_decay"] for group in groups):
        raise ConfigError(f"{key}.TYPE = {name} has no weight decay; set {key}.WEIGHT_DECAY, "
                          "WEIGHT_DECAY_BIAS, WEIGHT_DECAY_NORM and WEIGHT_DECAY_EMBED to 0")
    if kind.matrices_only:
        others = [(n, tuple(p.shape)) for group in groups for n, p in group["params"] if p.dim() < 2]
        if others:
            raise ConfigError(f"{key}.TYPE = {name} updates weight matrices and convolution kernels only, and "
                              f"{len(others)} trainable parameters are not (e.g. {others[0][0]} of shape "
                              f"{others[0][1]}); route those to another optimizer (SOLVER.OPTIMIZERS with "
                              "MIN_NDIM 2 for this one, see the README's Routing parameters to optimizers)")
        if any(isinstance(p, DTensor) for group in groups for _, p in group["params"]):
            raise ConfigError(f"{key}.TYPE = {name} orthogonalises whole matrices, and DISTRIBUTED.STRATEGY FSDP "
                              "shards them over the processes; use DDP with Muon")


def muon_kind(kind: OptimizerType, groups: List[Dict[str, Any]], kwargs: Dict[str, Any],
              key: str) -> Tuple[OptimizerType, Dict[str, Any]]:
    """torch's Muon for 2-D matrices; where convolution kernels are among them, timm's Muon, which flattens them
    to 2-D and, given torch's coefficients, updates matrices exactly as torch's does. Other classes as they are."""
    if kind.cls is not torch.optim.Muon or all(p.dim() == 2 for group in groups for _, p in group["params"]):
        return kind, kwargs
    return muon_for_kernels(f"{key}.TYPE"), dict(kwargs, ns_coefficients="original", conv_mode="flatten")


def supports_fused(kind: OptimizerType, groups: List[Dict[str, Any]]) -> bool:
    """Whether torch has fused kernels for the class and every parameter of `groups` (real floating point, a
    supported device; sharded ones only where the kernels take DTensors). torch checks devices only at the first
    step, so the choice is made before construction."""
    params = [p for group in groups for _, p in group["params"]]
    if not kind.fused_sharded and any(isinstance(p, DTensor) for p in params):
        return False
    return bool(kind.fused_devices) and all(p.is_floating_point() and p.device.type in kind.fused_devices
                                            for p in params)


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


def construct_optimizer(cls: type, groups: List[Dict[str, Any]], kwargs: Dict[str, Any],
                        key: str = "SOLVER.OPTIMIZER.TYPE") -> torch.optim.Optimizer:
    """Instantiate `cls` over `groups` with `kwargs`; torch's refusals become a `ConfigError` naming `key`."""
    try:
        return cls(groups, **kwargs)
    except (ValueError, RuntimeError) as e:  # how torch's classes refuse values; a TypeError is a bug
        raise ConfigError(f"{key} = {cls.__name__} cannot optimize this model: {' '.join(str(e).split())}") from None


def warn_if_no_backbone(model: nn.Module, rules: GroupRules, key: str) -> None:
    """A BACKBONE_LR_FACTOR that reaches no parameter (the model has no module named BACKBONE_PREFIX) is said,
    never silently dropped."""
    if rules.backbone_lr_factor == 1.0 or any(in_backbone(name, rules.backbone_prefix)
                                              for name, _ in model.named_parameters()):
        return
    tops = [name for name, _ in model.named_children()][:6]
    logger.warning("%s.BACKBONE_LR_FACTOR = %g does nothing: %s has no module %r (its modules: %s); set "
                   "%s.BACKBONE_PREFIX to the module to slow down", key, rules.backbone_lr_factor,
                   type(model).__name__, rules.backbone_prefix, ", ".join(tops) or "none", key)


@dataclass(frozen=True)
class GuardedOptimizer:
    """A built optimizer with what the trainer and checkpoints must know of it, written down rather than stuck onto
    the torch object.

    Attributes:
        optimizer: the torch optimizer itself (its class as configured, never a subclass).
        guard: its gradient guard (clipping and the non-finite check, a step pre-hook), or None when both are off.
        configured_keys: the param-group keys that come from the config (lrs, decays, constructor arguments): a
            resume takes these from the config and the rest of a group's state from the checkpoint.
    """

    optimizer: torch.optim.Optimizer
    guard: Optional[GradientGuard]
    configured_keys: FrozenSet[str]


def build_guarded_optimizer(model: nn.Module, spec: OptimizerSpec, modules: Sequence[str] = (),
                            key: str = "SOLVER.OPTIMIZER", names: Optional[Sequence[str]] = None) -> GuardedOptimizer:
    """A torch optimizer over `model` (or its `modules`, or the parameters of full `names`: a route) with merged
    param groups, and its gradient guard.

    `key` names the settings in error messages. Example:
        >>> spec = OptimizerSpec(optimizer_type("SGD"), GroupRules(base_lr=0.1, weight_decay=1e-4),
        ...                      {"momentum": 0.9}, guard=("full_model", 1.0, 2.0))
        >>> built = build_guarded_optimizer(model, spec)  # torch.optim.SGD, fused on CPU and CUDA
        >>> built.optimizer.step(); built.guard.num_skipped
    """
    try:
        groups = build_param_groups(model, spec.rules, modules, names)
    except UnsupportedModel as e:
        raise ConfigError(f"{key}.LAYER_DECAY.RATE = {spec.rules.layer_decay_rate}: {e}") from None
    except ValueError as e:  # nothing to train
        raise ConfigError(f"{key}: {e}") from None
    check_supported(spec.kind, groups, key)
    warn_if_no_backbone(model, spec.rules, key)
    kind, kwargs = muon_kind(spec.kind, groups, spec.kwargs, key)
    kwargs = dict(kwargs, **implementation_kwargs(kind, groups, spec.implementation, key))
    optimizer = construct_optimizer(kind.cls, groups, kwargs, key=f"{key}.TYPE")
    guard = add_gradient_guard(optimizer, *spec.guard) if spec.guard is not None else None
    if needs_first_step_guard(optimizer):
        FusedFirstStepGuard(optimizer)
    logger.info("Optimizer %s with %d parameter groups:\n%s", type(optimizer).__name__, len(optimizer.param_groups),
                format_param_groups(optimizer))
    configured = frozenset({"lr", "initial_lr", "weight_decay", "initial_weight_decay", "name", "lars_exclude",
                            *kwargs})
    return GuardedOptimizer(optimizer, guard, configured)


def build_optimizer(model: nn.Module, spec: OptimizerSpec, modules: Sequence[str] = (),
                    key: str = "SOLVER.OPTIMIZER") -> torch.optim.Optimizer:
    """The torch optimizer of `build_guarded_optimizer` (its guard registered as a step pre-hook)."""
    return build_guarded_optimizer(model, spec, modules, key).optimizer


# ------------------------------------------------------------------------------------------ the config adapter
def group_rules(cfg: Any) -> GroupRules:
    """The grouping rules of SOLVER.OPTIMIZER `cfg`."""
    return GroupRules(
        base_lr=cfg.BASE_LR, weight_decay=cfg.WEIGHT_DECAY, weight_decay_bias=cfg.WEIGHT_DECAY_BIAS,
        weight_decay_norm=cfg.WEIGHT_DECAY_NORM, weight_decay_embed=cfg.WEIGHT_DECAY_EMBED,
        bias_lr_factor=cfg.BIAS_LR_FACTOR, backbone_lr_factor=cfg.BACKBONE_LR_FACTOR,
        backbone_prefix=cfg.BACKBONE_PREFIX,
        lars_exclude_norm_and_bias=cfg.LARS.EXCLUDE_NORM_AND_BIAS if cfg.TYPE.upper() == "LARS" else None,
        layer_decay_rate=cfg.LAYER_DECAY.RATE, overrides=tuple(tuple(rule) for rule in cfg.OVERRIDES.RULES))


def optimizer_kwargs(kind: OptimizerType, cfg: Any, key: str = "SOLVER.OPTIMIZER") -> Dict[str, Any]:
    """The constructor arguments SOLVER.OPTIMIZER `cfg` supplies to the class of `kind`, mapped by meaning.

    MOMENTUM goes to SGD, RMSprop, LARS and Muon, NESTEROV to SGD, LARS and Muon, BETAS and EPS to the Adam family,
    EPS to RMSprop, Adagrad, Adadelta and LARS (the capability table of `optimizer_types`). A key changed from its
    default that the class does not take is logged as a warning rather than dropped silently.
    """
    defaults = get_cfg().SOLVER.OPTIMIZER
    kwargs: Dict[str, Any] = {}
    for name, argument in KEY_ARGUMENTS.items():
        if name in kind.keys:
            kwargs[argument] = tuple(cfg[name]) if name == "BETAS" else cfg[name]
        elif cfg[name] != defaults[name]:
            reason = f" ({kind.unmapped[name]})" if name in kind.unmapped else ""
            logger.warning("%s.%s = %r is not used by %s%s", key, name, cfg[name], kind.cls.__name__, reason)
    if kind.cls is LARS:
        kwargs["trust_coefficient"] = cfg.LARS.TRUST_COEFFICIENT
    if kind.cls is torch.optim.Muon:
        kwargs.update(ns_steps=cfg.MUON.NS_STEPS, adjust_lr_fn=cfg.MUON.ADJUST_LR)
    return kwargs


def extra_kwargs(kind: OptimizerType, given: Dict[str, Any], mapped: Dict[str, Any],
                 key: str = "SOLVER.OPTIMIZER") -> Dict[str, Any]:
    """KWARGS checked against the constructor of the class of `kind`: an argument it does not take, or one that a
    config key already sets (`mapped`, the lr, the weight decay, the kernels), is a `ConfigError` naming it."""
    parameters = inspect.signature(kind.cls.__init__).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    reserved = {"self", "params", "lr", "weight_decay", "fused", "foreach", *mapped}
    accepted = sorted(name for name in parameters if name not in reserved and parameters[name].kind not in (
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD))
    hints = annotations_of(kind.cls.__init__)
    for name, value in given.items():
        if name in reserved:
            raise ConfigError(f"{key}.KWARGS.{name} is set by the config's own keys (BASE_LR, WEIGHT_DECAY*, "
                              f"MOMENTUM, NESTEROV, BETAS, EPS, KERNELS); set it there")
        if name not in parameters and not open_ended:
            raise ConfigError(f"{key}.KWARGS.{name}: {kind.cls.__name__} takes no argument {name!r}; it takes "
                              f"{', '.join(accepted) or 'no further arguments'}")
        parameter = parameters.get(name)
        check_kwarg_value(value, value_kinds(parameter, hints.get(name)), f"{key}.KWARGS.{name}",
                          parameter.default if parameter is not None else None)
    return {name: tuple(value) if isinstance(value, list) else value for name, value in given.items()}


def annotations_of(function: Any) -> Dict[str, Any]:
    """The resolved type hints of `function`'s arguments; none where they cannot be resolved."""
    try:
        return typing.get_type_hints(function)
    except Exception:  # string annotations naming what the module does not import: then defaults decide
        return {}


# The forms a config value can take: from the YAML parser, so no tensors or other objects.
_KINDS_OF = {bool: "bool", int: "int", float: "number", str: "str", type(None): "none", tuple: "sequence",
             list: "sequence"}


def value_kinds(parameter: Optional[inspect.Parameter], hint: Any) -> FrozenSet[str]:
    """What an argument takes, from its annotation (`float | None`: a number or None), else from its default (a
    number for an int default too: `momentum: float = 0`); `any` when neither says."""
    if hint is not None:
        kinds = _hint_kinds(hint)
        if kinds:
            return kinds
    default = parameter.default if parameter is not None else inspect.Parameter.empty
    if default is inspect.Parameter.empty or default is None:
        return frozenset({"any"})
    kind = _KINDS_OF.get(type(default), "any")
    return frozenset({"number" if kind == "int" else kind})


def _hint_kinds(hint: Any) -> FrozenSet[str]:
    """The kinds an annotation admits (empty when it names none that a config can give: then the default
    decides)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return frozenset().union(*(_hint_kinds(arg) for arg in typing.get_args(hint)))
    if hint is typing.Any:
        return frozenset({"any"})
    kind = _KINDS_OF.get(origin or hint)
    return frozenset({kind}) if kind else frozenset()


_DESCRIPTIONS = {"bool": "True or False", "int": "an integer", "number": "a finite number", "str": "a string",
                 "none": "None", "sequence": "a list"}


# The largest magnitude a float32 holds: hyperparameters meet the parameters' float32 tensors in the kernels.
FLOAT32_MAX = 3.4028234663852886e38


def check_kwarg_value(value: Any, kinds: FrozenSet[str], key: str, default: Any = None) -> None:
    """A `ConfigError` naming `key` when `value` is not of one of `kinds`, or holds a number that is not finite or
    does not fit a float32 (a NaN dampening would turn every weight to NaN without a non-finite gradient to
    notice). A list stands for a tuple default of the same length, item by item (Rprop's `etas`, Adafactor's
    `eps`)."""
    kind = _KINDS_OF.get(type(value), "other")
    fits = "any" in kinds or kind in kinds or (kind == "int" and "number" in kinds)
    if not fits:
        allowed = " or ".join(_DESCRIPTIONS[k] for k in sorted(kinds))
        raise ConfigError(f"{key} = {shown(value)} is invalid; allowed: {allowed}")
    items = list(value) if kind == "sequence" else [value]
    if kind == "sequence" and isinstance(default, tuple):
        if len(items) != len(default):
            raise ConfigError(f"{key} = {shown(value)} is invalid; allowed: {len(default)} items like {default!r}")
        for index, (item, item_default) in enumerate(zip(items, default)):
            item_kinds = frozenset({"number", "none"}) if item_default is None else \
                frozenset({"number" if _KINDS_OF.get(type(item_default)) == "int" else
                           _KINDS_OF.get(type(item_default), "any")})
            check_kwarg_value(item, item_kinds, f"{key}[{index}]")
    elif kind == "sequence" and not all(_KINDS_OF.get(type(item)) in ("int", "number", "bool", "none")
                                        for item in items):
        raise ConfigError(f"{key} = {shown(value)} is invalid; allowed: a list of numbers")
    if any(_KINDS_OF.get(type(item)) in ("int", "number") and not abs(item) <= FLOAT32_MAX for item in items):
        raise ConfigError(f"{key} = {shown(value)} is invalid; allowed: finite numbers of at most {FLOAT32_MAX:.3g}")


def guard_settings(cfg: Any) -> Optional[GuardSettings]:
    """The gradient guard of SOLVER.OPTIMIZER `cfg`: CLIP_GRADIENTS when it is enabled, else the bare non-finite
    check when NONFINITE.CHECK_GRADIENTS is on, else None."""
    clip = cfg.CLIP_GRADIENTS
    if clip.ENABLED:
        return clip.CLIP_TYPE.lower(), clip.CLIP_VALUE, clip.NORM_TYPE
    return ("none", math.inf, 2.0) if cfg.NONFINITE.CHECK_GRADIENTS else None


def optimizer_spec(cfg: Any, key: str = "SOLVER.OPTIMIZER") -> OptimizerSpec:
    """Read a validated SOLVER.OPTIMIZER node into an `OptimizerSpec` (an unknown TYPE is a `ConfigError`)."""
    kind = optimizer_type(cfg.TYPE, key=f"{key}.TYPE")
    kwargs = optimizer_kwargs(kind, cfg, key)
    kwargs.update(extra_kwargs(kind, dict(cfg.KWARGS), kwargs, key))
    return OptimizerSpec(kind, group_rules(cfg), kwargs, cfg.KERNELS.IMPLEMENTATION.upper(), guard_settings(cfg))


class Optimizer:
    """Builder of the training optimizer from SOLVER.OPTIMIZER (Pet's API).

    Args:
        model: the module whose trainable parameters are optimized.
        cfg: the SOLVER.OPTIMIZER node; it is validated here, before any work.
        modules: dotted names of the submodules to optimize (all of the model when empty); parameter names and
            the rules still see the full names.
        names: the full names of the parameters to optimize (a route of `pet.solver.param_groups.routes`), or
            None for every one under `modules`.
        key: the config key of `cfg`, for error messages (SOLVER.OPTIMIZERS.<name>.OPTIMIZER for named ones).

    Example:
        >>> optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()  # a plain torch.optim.Optimizer
    """

    def __init__(self, model: nn.Module, cfg: Any, modules: Sequence[str] = (),
                 key: str = "SOLVER.OPTIMIZER", names: Optional[Sequence[str]] = None) -> None:
        validate_optimizer_cfg(cfg, prefix=key)
        self.model = model
        self.cfg = cfg
        self.modules = tuple(modules)
        self.key = key
        self.names = names

    def build(self) -> torch.optim.Optimizer:
        """Return a `torch.optim.Optimizer` with merged param groups and the gradient guard, as configured."""
        return self.build_guarded().optimizer

    def build_guarded(self) -> GuardedOptimizer:
        """The optimizer with its guard and configured keys: what a run's solver units are made of."""
        return build_guarded_optimizer(self.model, optimizer_spec(self.cfg, self.key), self.modules, self.key,
                                       self.names)
