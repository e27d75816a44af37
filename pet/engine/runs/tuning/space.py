"""A search space over config keys, read from YAML: one `KEY: {KIND: [...]}` entry per hyperparameter.

    SOLVER.OPTIMIZER.BASE_LR: {log_uniform: [1.0e-4, 1.0]}
    SOLVER.OPTIMIZER.WEIGHT_DECAY: {uniform: [0.0, 1.0e-3]}
    SOLVER.SCHEDULER.WARM_UP_ITERS: {int: [0, 50]}
    SOLVER.OPTIMIZER.TYPE: {choice: [SGD, ADAMW]}

Every key is checked against the config, and every spec's form and values (both ends of a range, each choice,
merged alone into the config, must make a valid config), before anything runs or is written: a problem is one
`ConfigError` naming the key.
"""
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from pet.config import ConfigError, validate_cfg
from pet.config.node import read_yaml, shown

KINDS = ("log_uniform", "uniform", "int", "choice")
SPEC_FORMS = "{log_uniform: [low, high]}, {uniform: [low, high]}, {int: [low, high]} or {choice: [a, b, ...]}"
# What Optuna keeps as a categorical value; a tuple key takes its choices as strings: "(140, 180)".
CHOICE_TYPES = (str, int, float, bool, type(None))
# Keys a trial must not choose: the tool puts each trial's run in OUTPUT_DIR/trial_<k>.
FIXED_KEYS = ("OUTPUT_DIR",)


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a config key and where its values are drawn from."""

    key: str
    kind: str  # one of KINDS
    values: Tuple[Any, ...]  # (low, high) of a range, or the choices

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for an Optuna trial; the parameter is named by its config key."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        low, high = self.values
        if self.kind == "int":
            return trial.suggest_int(self.key, low, high)
        return trial.suggest_float(self.key, low, high, log=self.kind == "log_uniform")


def read_space(path: str, cfg: Any) -> List[Param]:
    """The search space of the YAML file `path`, checked against `cfg` (a valid config, left unchanged): an
    unknown key, a group of keys, a malformed spec, or a value that makes the config invalid is a `ConfigError`
    naming the file and the key."""
    loaded = read_yaml(path)
    if not loaded:
        raise ConfigError(f"search space {path} is empty; give one KEY: {SPEC_FORMS} per hyperparameter")
    params = [parse_param(key, spec, path) for key, spec in loaded.items()]
    for param in params:
        check_param(param, cfg, path)
    return params


def parse_param(key: Any, spec: Any, path: str) -> Param:
    """One entry of a space file as a `Param`; a spec of another form is a `ConfigError` naming the key."""
    if not isinstance(key, str):
        raise ConfigError(f"search space {path}: the key {key!r} is not a config key like SOLVER.OPTIMIZER.BASE_LR")
    where = f"search space {path}: {key}"
    if key in FIXED_KEYS:
        raise ConfigError(f"{where} cannot be searched: each trial runs in OUTPUT_DIR/trial_<k>")
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in KINDS):
        raise ConfigError(f"{where} = {shown(spec)} is not a spec; write {SPEC_FORMS}")
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        return Param(key, kind, choices(values, where))
    if not (isinstance(values, list) and len(values) == 2):
        raise ConfigError(f"{where}: {kind} takes [low, high], got {shown(values)}")
    low, high = (integer(v, where) if kind == "int" else number(v, where) for v in values)
    if not low < high:
        raise ConfigError(f"{where}: {kind} [{low}, {high}] needs low < high")
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"{where}: log_uniform [{low}, {high}] needs 0 < low (a log scale)")
    return Param(key, kind, (low, high))


def number(value: Any, where: str) -> float:
    """A finite float from a range's end; YAML 1.1 reads `1e-4` (no dot) as a string, which is taken too."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            converted = float(value)
        except (ValueError, OverflowError):
            converted = math.nan
        if math.isfinite(converted):
            return converted
    raise ConfigError(f"{where}: {shown(value)} is not a finite number")


def integer(value: Any, where: str) -> int:
    """An int from an `int` range's end."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{where}: int takes integer ends, got {shown(value)}")


def choices(values: Any, where: str) -> Tuple[Any, ...]:
    """The values of a `choice`: at least two, distinct, each a string, number, bool or null."""
    if not (isinstance(values, list) and len(values) >= 2):
        raise ConfigError(f"{where}: choice takes a list of at least two values, got {shown(values)}")
    for value in values:
        if not isinstance(value, CHOICE_TYPES):
            raise ConfigError(f"{where}: the choice {shown(value)} is not a string, number, bool or null (write a "
                              "list or tuple value as a string: \"(140, 180)\")")
    if len({(type(v), v) for v in values}) < len(values):
        raise ConfigError(f"{where}: choice {shown(values)} holds a value twice")
    return tuple(values)


def check_param(param: Param, cfg: Any, path: str) -> None:
    """`param.key` is a value key of `cfg`, and each of its range's ends and choices, merged alone into `cfg`,
    makes a valid config; a `ConfigError` naming the key otherwise."""
    probe = cfg.clone()
    try:
        # The key alone (a null value passes every type check): unknown keys and groups get the config's own
        # message, with its `did you mean` hints.
        probe.merge_from_list([param.key, None])
    except ConfigError as e:
        raise ConfigError(f"search space {path}: {e}") from None
    ends = ("low end", "high end") if param.kind != "choice" else ("choice",) * len(param.values)
    for value, which in zip(param.values, ends):
        probe = cfg.clone()
        try:
            probe.merge_from_list([param.key, value])
            validate_cfg(probe)
        except ConfigError as e:
            raise ConfigError(f"search space {path}: {param.key}: the {which} {shown(value)} makes the config "
                              f"invalid: {e}") from None


def trial_config(cfg: Any, params: Dict[str, Any], output_dir: str) -> Any:
    """A copy of `cfg` with a trial's values merged and OUTPUT_DIR set, validated (a `ConfigError` when this
    combination of values is invalid); `cfg` is left unchanged."""
    trial = cfg.clone()
    trial.merge_from_list([item for key, value in params.items() for item in (key, value)] + ["OUTPUT_DIR", output_dir])
    validate_cfg(trial)
    return trial
