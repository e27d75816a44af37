"""Validation of the SOLVER tree: every key against its allowed values, errors naming the full key.

Each check is a (predicate, allowed-values text) pair per key, so the error message and the rule cannot drift
apart. Cross-key rules (STEPS within the total length) follow the per-key table.
"""
import math
import re
from typing import Any, Callable, Dict, Iterable, Tuple

from pet.config.errors import ConfigError

POLICIES = ("STEP", "COSINE", "STEP_COSINE", "POLY", "ONE_CYCLE", "NOAM", "CHAIN")
# Policies that rise from a low lr by themselves: the generic warmup does not apply to them.
OWN_RISE_POLICIES = ("ONE_CYCLE", "NOAM")
WARMUP_KEYS = ("WARM_UP_ITERS", "WARM_UP_EPOCHS", "WARM_UP_FACTOR", "WARM_UP_METHOD")
CHAIN_POLICIES = ("CONSTANT", "STEP", "COSINE", "POLY")
WARMUP_METHODS = ("CONSTANT", "LINEAR", "EXP")
CLIP_TYPES = ("full_model", "norm", "value")
IMPLEMENTATIONS = ("AUTO", "FUSED", "FOREACH", "FOR_LOOP")

Rule = Tuple[Callable[[Any], bool], str]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(v: Any) -> bool:
    return _is_number(v) and 0 < v < math.inf


def _non_negative(v: Any) -> bool:
    return _is_number(v) and 0 <= v < math.inf


def _in_unit(low_open: bool, high_open: bool) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        return _is_number(v) and (0 < v if low_open else 0 <= v) and (v < 1 if high_open else v <= 1)
    return check


def _one_of(choices: Iterable[str], case_sensitive: bool = False) -> Callable[[Any], bool]:
    allowed = {c if case_sensitive else c.upper() for c in choices}
    return lambda v: isinstance(v, str) and (v if case_sensitive else v.upper()) in allowed


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_betas(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(_in_unit(False, True)(b) for b in v)


def _is_prefix(v: Any) -> bool:
    return isinstance(v, str) and v.strip(".") == v and v != ""


def _is_steps(v: Any) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) > 0 and all(_positive(s) for s in v)
            and all(a < b for a, b in zip(v, v[1:])))


def _optional(rule: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or rule(v)


def _is_regex(v: Any) -> bool:
    try:
        re.compile(v)
    except (re.error, TypeError):
        return False
    return isinstance(v, str)


def _is_override_rules(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(
        isinstance(r, (list, tuple)) and len(r) == 3 and _is_regex(r[0]) and _non_negative(r[1])
        and (r[2] is None or _non_negative(r[2])) for r in v)


def _is_phases(v: Any) -> bool:
    if not isinstance(v, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 3 and isinstance(p[0], str)
            and p[0].upper() in CHAIN_POLICIES and _non_negative(p[1]) and _positive(p[2]) and p[1] < p[2]
            for p in v):
        return False
    return all(a[2] <= b[1] for a, b in zip(v, v[1:]))


def is_names(v: Any) -> bool:
    """A list or tuple of non-empty strings."""
    return isinstance(v, (list, tuple)) and all(isinstance(n, str) and n for n in v)


OPTIMIZER_RULES: Dict[str, Rule] = {
    "BASE_LR": (_positive, "a number > 0"),
    "MOMENTUM": (_in_unit(False, True), "a number in [0, 1)"),
    "NESTEROV": (_is_bool, "True or False"),
    "BETAS": (_is_betas, "two numbers in [0, 1), e.g. (0.9, 0.999)"),
    "EPS": (_positive, "a number > 0"),
    "WEIGHT_DECAY": (_non_negative, "a number >= 0"),
    "WEIGHT_DECAY_BIAS": (_non_negative, "a number >= 0"),
    "WEIGHT_DECAY_NORM": (_non_negative, "a number >= 0"),
    "WEIGHT_DECAY_EMBED": (_non_negative, "a number >= 0"),
    "BIAS_LR_FACTOR": (_non_negative, "a number >= 0"),
    "BACKBONE_LR_FACTOR": (_non_negative, "a number >= 0"),
    "BACKBONE_PREFIX": (_is_prefix, "a non-empty module name without leading or trailing dots"),
}

CLIP_RULES: Dict[str, Rule] = {
    "ENABLED": (_is_bool, "True or False"),
    "CLIP_TYPE": (_one_of(CLIP_TYPES, case_sensitive=False), " | ".join(CLIP_TYPES)),
    "CLIP_VALUE": (_positive, "a number > 0"),
    "NORM_TYPE": (lambda v: _is_number(v) and v > 0, "a number > 0, or inf"),
}

LARS_RULES: Dict[str, Rule] = {
    "TRUST_COEFFICIENT": (_positive, "a number > 0"),
    "EXCLUDE_NORM_AND_BIAS": (_is_bool, "True or False"),
}

OVERRIDES_RULES: Dict[str, Rule] = {
    "RULES": (_is_override_rules, "a list of (REGEX, LR_FACTOR >= 0, WEIGHT_DECAY >= 0 or None)"),
}

LAYER_DECAY_RULES: Dict[str, Rule] = {
    "RATE": (_in_unit(True, False), "a number in (0, 1]; 1 turns layer decay off"),
}

ONE_CYCLE_RULES: Dict[str, Rule] = {
    "PCT_START": (lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "DIV_FACTOR": (lambda v: _is_number(v) and 1 <= v < math.inf, "a number >= 1"),
    "FINAL_DIV_FACTOR": (lambda v: _is_number(v) and 1 <= v < math.inf, "a number >= 1"),
}

MOMENTUM_SCHEDULE_RULES: Dict[str, Rule] = {
    "POLICY": (_one_of(("CONSTANT", "COSINE", "CYCLIC")), "CONSTANT | COSINE | CYCLIC"),
    "START": (_in_unit(False, True), "a number in [0, 1)"),
    "END": (_in_unit(False, True), "a number in [0, 1)"),
}

WEIGHT_DECAY_SCHEDULE_RULES: Dict[str, Rule] = {
    "POLICY": (_one_of(("CONSTANT", "COSINE")), "CONSTANT | COSINE"),
    "END_FACTOR": (_non_negative, "a number >= 0"),
}

LR_SCALING_RULES: Dict[str, Rule] = {
    "FT_FACTOR": (_positive, "a number > 0"),
    "REFERENCE_BATCH_SIZE": (lambda v: is_int(v) and v >= 0, "an integer >= 0 (0: no scaling)"),
    "SCALE_SCHEDULE": (_is_bool, "True or False"),
}

SCHEDULER_RULES: Dict[str, Rule] = {
    "POLICY": (_one_of(POLICIES), " | ".join(POLICIES)),
    "TOTAL_ITERS": (lambda v: is_int(v) and v > 0, "an integer > 0"),
    "TOTAL_EPOCHS": (_optional(lambda v: is_int(v) and v > 0), "None or an integer > 0"),
    "STEPS": (_is_steps, "a non-empty, strictly increasing list of numbers > 0"),
    "GAMMA": (_in_unit(True, False), "a number in (0, 1]"),
    "WARM_UP_ITERS": (lambda v: is_int(v) and v >= 0, "an integer >= 0 (0 disables warmup)"),
    "WARM_UP_EPOCHS": (_optional(_non_negative), "None or a number >= 0"),
    "WARM_UP_FACTOR": (_in_unit(True, False), "a number in (0, 1]"),
    "WARM_UP_METHOD": (_one_of(WARMUP_METHODS), " | ".join(WARMUP_METHODS)),
    "LR_POW": (_positive, "a number > 0"),
    "MIN_LR_FACTOR": (_in_unit(False, True), "a number in [0, 1)"),
    "LOG_LR_CHANGE_THRESHOLD": (lambda v: _is_number(v) and v >= 1, "a number >= 1"),
}


def check_node(node: Any, rules: Dict[str, Rule], prefix: str, sub_nodes: Iterable[str] = ()) -> None:
    """Raise `ConfigError` for the first key of `node` that is unknown, missing or outside its allowed values."""
    known = set(rules) | set(sub_nodes)
    dot = f"{prefix}." if prefix else ""
    for key in node.keys():
        if key not in known:
            raise ConfigError(f"unknown config key {dot}{key}")
    for key in sub_nodes:
        if key not in node:
            raise ConfigError(f"missing config key {dot}{key}")
    for key, (is_valid, allowed) in rules.items():
        if key not in node:
            raise ConfigError(f"missing config key {dot}{key}")
        if not is_valid(node[key]):
            raise ConfigError(invalid_value(f"{dot}{key}", node[key], allowed))


def invalid_value(full_key: str, value: Any, allowed: str) -> str:
    """The one-line message for a key whose value is not allowed."""
    return f"{full_key} = {value!r} is invalid; allowed: {allowed}"


def validate_optimizer_cfg(opt: Any, prefix: str = "SOLVER.OPTIMIZER") -> None:
    """Check every key of SOLVER.OPTIMIZER (and its CLIP_GRADIENTS and LARS nodes)."""
    # Imported here: pet.solver imports this module, and TYPE is checked against the optimizer classes it knows.
    from pet.solver.optimizer_types import optimizer_class

    check_node(opt, {**OPTIMIZER_RULES, "TYPE": (lambda v: isinstance(v, str), "an optimizer name")}, prefix,
               sub_nodes=("CLIP_GRADIENTS", "NONFINITE", "LARS", "KERNELS", "OVERRIDES", "LAYER_DECAY"))
    optimizer_class(opt.TYPE, key=f"{prefix}.TYPE")
    check_node(opt.CLIP_GRADIENTS, CLIP_RULES, f"{prefix}.CLIP_GRADIENTS")
    check_node(opt.LARS, LARS_RULES, f"{prefix}.LARS")
    check_node(opt.NONFINITE, {"CHECK_GRADIENTS": (_is_bool, "True or False")}, f"{prefix}.NONFINITE")
    check_node(opt.KERNELS, {"IMPLEMENTATION": (_one_of(IMPLEMENTATIONS), " | ".join(IMPLEMENTATIONS))},
               f"{prefix}.KERNELS")
    check_node(opt.OVERRIDES, OVERRIDES_RULES, f"{prefix}.OVERRIDES")
    check_node(opt.LAYER_DECAY, LAYER_DECAY_RULES, f"{prefix}.LAYER_DECAY")
    if opt.NESTEROV and opt.MOMENTUM == 0:
        raise ConfigError(f"{prefix}.NESTEROV = True needs {prefix}.MOMENTUM > 0 (got 0)")


def validate_scheduler_cfg(sched: Any, prefix: str = "SOLVER.SCHEDULER") -> None:
    """Check every key of SOLVER.SCHEDULER, and that STEPS and CHAIN phases lie inside the run."""
    check_node(sched, SCHEDULER_RULES, prefix,
               sub_nodes=("ONE_CYCLE", "NOAM", "CHAIN", "MOMENTUM", "WEIGHT_DECAY"))
    check_node(sched.ONE_CYCLE, ONE_CYCLE_RULES, f"{prefix}.ONE_CYCLE")
    check_node(sched.NOAM, {"WARMUP_ITERS": (lambda v: is_int(v) and v > 0, "an integer > 0")}, f"{prefix}.NOAM")
    check_node(sched.CHAIN, {"PHASES": (_is_phases, "a list of (POLICY, BEGIN, END) with POLICY in "
                                        f"{' | '.join(CHAIN_POLICIES)}, 0 <= BEGIN < END, in order, not overlapping")},
               f"{prefix}.CHAIN")
    check_node(sched.MOMENTUM, MOMENTUM_SCHEDULE_RULES, f"{prefix}.MOMENTUM")
    check_node(sched.WEIGHT_DECAY, WEIGHT_DECAY_SCHEDULE_RULES, f"{prefix}.WEIGHT_DECAY")
    check_own_rise(sched, prefix)
    total_key = "TOTAL_ITERS" if sched.TOTAL_EPOCHS is None else "TOTAL_EPOCHS"
    total = sched[total_key]
    chained = sched.POLICY.upper() == "CHAIN"
    if chained != bool(sched.CHAIN.PHASES):
        raise ConfigError(f"{prefix}.CHAIN.PHASES = {tuple(sched.CHAIN.PHASES)!r} is used exactly when {prefix}.POLICY"
                          f" is CHAIN (POLICY is {sched.POLICY!r})")
    if chained and sched.CHAIN.PHASES[-1][2] > total:
        raise ConfigError(invalid_value(f"{prefix}.CHAIN.PHASES", tuple(sched.CHAIN.PHASES),
                                        f"phases that end by {prefix}.{total_key} = {total}"))
    if sched.POLICY.upper() not in ("STEP", "STEP_COSINE") and not (
            chained and any(p[0].upper() == "STEP" for p in sched.CHAIN.PHASES)):
        return  # STEPS are unused by the other policies; their range is not held against the run length
    if sched.STEPS[-1] >= total:
        raise ConfigError(invalid_value(f"{prefix}.STEPS", sched.STEPS,
                                        f"each step in (0, {prefix}.{total_key} = {total})"))


def check_own_rise(sched: Any, prefix: str) -> None:
    """ONE_CYCLE and NOAM have their own rise, so no generic warmup multiplies them: a warmup key set to anything
    but its default (or WARM_UP_ITERS 0) is a `ConfigError` rather than a warmup silently dropped."""
    policy = sched.POLICY.upper()
    if policy not in OWN_RISE_POLICIES:
        return
    from pet.config.solver import solver_defaults  # the defaults are built on this module's node class

    defaults = solver_defaults().SCHEDULER
    for key in WARMUP_KEYS:
        if sched[key] != defaults[key] and not (key == "WARM_UP_ITERS" and sched[key] == 0):
            raise ConfigError(f"{prefix}.{key} = {sched[key]!r} is not used with {prefix}.POLICY = {sched.POLICY!r}, "
                              f"which rises from its own start lr; leave {prefix}.{key} at its default "
                              f"{defaults[key]!r}")


ACCUMULATION_RULES: Dict[str, Rule] = {
    "STEPS": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
}

AMP_RULES: Dict[str, Rule] = {
    "ENABLED": (_is_bool, "True or False"),
    "DTYPE": (_one_of(("float16", "bfloat16"), case_sensitive=True), "float16 | bfloat16"),
}

MODEL_RULES: Dict[str, Rule] = {
    "NAME": (lambda v: isinstance(v, str) and v != "", "a torchvision classification or detection model name"),
    "NUM_CLASSES": (lambda v: is_int(v) and v >= 2, "an integer >= 2"),
    "NORM": (_one_of(("BN", "GN", "FROZEN_BN")), "BN | GN | FROZEN_BN"),
    "SMALL_INPUT": (_is_bool, "True or False"),
}

DETECTION_RULES: Dict[str, Rule] = {
    "MIN_SIZE": (lambda v: is_int(v) and v >= 32, "an integer >= 32"),
    "MAX_SIZE": (lambda v: is_int(v) and v >= 32, "an integer >= 32"),
}

CLASSIFICATION_DATASETS = ("digits", "image_folder", "fake")
DETECTION_DATASETS = ("shapes", "coco")

DATA_RULES: Dict[str, Rule] = {
    "DATASET": (_one_of(CLASSIFICATION_DATASETS + DETECTION_DATASETS, case_sensitive=True),
                " | ".join(CLASSIFICATION_DATASETS + DETECTION_DATASETS)),
    "ROOT": (lambda v: isinstance(v, str), "a folder path"),
    "IMAGE_SIZE": (lambda v: is_int(v) and v >= 8, "an integer >= 8"),
    "VAL_FRACTION": (lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "FAKE_SIZE": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "NUM_WORKERS": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    "CHECK_IMAGES": (_is_bool, "True or False"),
}

SHAPES_RULES: Dict[str, Rule] = {
    "NUM_TRAIN": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "NUM_VAL": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "MAX_SHAPES": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
}

_path: Rule = (lambda v: isinstance(v, str) and v != "", "a non-empty path")
COCO_RULES: Dict[str, Rule] = {key: _path for key in ("TRAIN_IMAGES", "TRAIN_JSON", "VAL_IMAGES", "VAL_JSON")}

_positive_int: Rule = (lambda v: is_int(v) and v >= 1, "an integer >= 1")

TRAIN_RULES: Dict[str, Rule] = {
    "BATCH_SIZE": _positive_int,
    "CHECKPOINT_PERIOD": _positive_int,
    "CHECKPOINTS_TO_KEEP": _positive_int,
    "WRITER_PERIOD": _positive_int,
    "EVAL_PERIOD": (lambda v: is_int(v) and v >= 0, "an integer >= 0 (0: only at the end)"),
    "MAX_CONSECUTIVE_SKIPS": (lambda v: is_int(v) and v >= 0, "an integer >= 0 (0: never stop)"),
}


def validate_solver_cfg(solver: Any) -> None:
    """Check the whole SOLVER tree."""
    check_node(solver, {}, "SOLVER",
               sub_nodes=("OPTIMIZER", "SCHEDULER", "ACCUMULATION", "AMP", "LR_SCALING", "OPTIMIZERS"))
    validate_optimizer_cfg(solver.OPTIMIZER)
    validate_scheduler_cfg(solver.SCHEDULER)
    check_node(solver.LR_SCALING, LR_SCALING_RULES, "SOLVER.LR_SCALING")
    from pet.config.optimizers import optimizer_entries  # it builds on this module's checks

    optimizer_entries(solver)
    check_node(solver.ACCUMULATION, ACCUMULATION_RULES, "SOLVER.ACCUMULATION")
    check_node(solver.AMP, AMP_RULES, "SOLVER.AMP")


def validate_cfg(cfg: Any) -> None:
    """Check the whole config: top-level keys, MODEL, DATA, TRAIN, TEST and SOLVER."""
    check_node(cfg, {"OUTPUT_DIR": (lambda v: isinstance(v, str) and v != "", "a non-empty folder path"),
                     "SEED": (lambda v: is_int(v) and v >= 0, "an integer >= 0")},
               "", sub_nodes=("MODEL", "DATA", "TRAIN", "TEST", "SOLVER"))
    check_node(cfg.MODEL, MODEL_RULES, "MODEL", sub_nodes=("DETECTION",))
    check_node(cfg.MODEL.DETECTION, DETECTION_RULES, "MODEL.DETECTION")
    if cfg.MODEL.DETECTION.MAX_SIZE < cfg.MODEL.DETECTION.MIN_SIZE:
        raise ConfigError(invalid_value("MODEL.DETECTION.MAX_SIZE", cfg.MODEL.DETECTION.MAX_SIZE,
                                        f"an integer >= MODEL.DETECTION.MIN_SIZE = {cfg.MODEL.DETECTION.MIN_SIZE}"))
    check_node(cfg.DATA, DATA_RULES, "DATA", sub_nodes=("SHAPES", "COCO"))
    check_node(cfg.DATA.SHAPES, SHAPES_RULES, "DATA.SHAPES")
    check_node(cfg.DATA.COCO, COCO_RULES, "DATA.COCO")
    if cfg.DATA.DATASET == "image_folder" and not cfg.DATA.ROOT:
        raise ConfigError("DATA.ROOT is empty; DATA.DATASET = 'image_folder' needs a folder with train/ and val/")
    check_node(cfg.TRAIN, TRAIN_RULES, "TRAIN")
    check_node(cfg.TEST, {"BATCH_SIZE": _positive_int}, "TEST")
    validate_solver_cfg(cfg.SOLVER)
