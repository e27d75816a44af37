"""Keys that the rest of the config makes meaningless: reported once at the start of a run, never dropped silently.

A key counts only when it is set to something other than its default. Which keys are refused instead (a warmup
for ONE_CYCLE / NOAM, CHAIN.PHASES without CHAIN, detection keys for a classifier) is decided where they are
validated; the rest are listed here with the reason they do nothing.
"""
from typing import Any, Dict, Iterator, List, Tuple

from pet.config.defaults import get_cfg
from pet.config.named_optimizers import optimizer_entries
from pet.imports import is_import_path
from pet.lr_policies import POLICIES, lookup, policy_arguments

# Keys that only a policy reads (all the others apply to every policy).
POLICY_KEYS = sorted({key for policy in POLICIES.values() for key in policy.keys})
DATA_KEYS_BY_DATASET = {"VAL_FRACTION": ("digits",), "FAKE_SIZE": ("fake",), "CHECK_IMAGES": ("image_folder",),
                        "ROOT": ("image_folder", "coco", "shapes"), "IMAGE_SIZE": ("image_folder", "fake", "shapes")}


def _changed(node: Any, defaults: Any, key: str) -> bool:
    return lookup(node, key) != lookup(defaults, key)


def _optimizer(opt: Any, defaults: Any) -> Iterator[Tuple[str, str]]:
    clip = opt.CLIP_GRADIENTS
    for key in ("CLIP_TYPE", "CLIP_VALUE", "NORM_TYPE"):
        if not clip.ENABLED and _changed(opt, defaults, f"CLIP_GRADIENTS.{key}"):
            yield f"CLIP_GRADIENTS.{key}", "CLIP_GRADIENTS.ENABLED is False"
    if clip.ENABLED and clip.CLIP_TYPE.lower() == "value" and _changed(opt, defaults, "CLIP_GRADIENTS.NORM_TYPE"):
        yield "CLIP_GRADIENTS.NORM_TYPE", "CLIP_TYPE value clamps elements and takes no norm"
    if clip.ENABLED and _changed(opt, defaults, "NONFINITE.CHECK_GRADIENTS"):
        yield "NONFINITE.CHECK_GRADIENTS", "clipping is on and skips non-finite gradients itself"
    for node, keys in (("LARS", ("TRUST_COEFFICIENT", "EXCLUDE_NORM_AND_BIAS")), ("MUON", ("NS_STEPS", "ADJUST_LR"))):
        for key in keys:
            if opt.TYPE.upper() != node and _changed(opt, defaults, f"{node}.{key}"):
                yield f"{node}.{key}", f"TYPE is {opt.TYPE}, not {node}"


def _scheduler(sched: Any, defaults: Any) -> Iterator[Tuple[str, str]]:
    for length, epochs in (("TOTAL_ITERS", "TOTAL_EPOCHS"), ("WARM_UP_ITERS", "WARM_UP_EPOCHS")):
        if sched[epochs] is not None and _changed(sched, defaults, length):
            yield length, f"{epochs} is set"
    policy = POLICIES[sched.POLICY.upper()]
    used = policy.used_keys(policy_arguments(sched))
    for key in POLICY_KEYS:
        if key not in used and key != "CHAIN.PHASES" and _changed(sched, defaults, key):
            yield key, f"POLICY {sched.POLICY} does not read it"
    no_warmup = sched.WARM_UP_EPOCHS is None and sched.WARM_UP_ITERS == 0
    for key in ("WARM_UP_FACTOR", "WARM_UP_METHOD"):
        if no_warmup and not policy.own_rise and _changed(sched, defaults, key):
            yield key, "there is no warmup (WARM_UP_ITERS is 0)"
    for node, keys in (("MOMENTUM", ("START", "END")), ("WEIGHT_DECAY", ("END_FACTOR",))):
        for key in keys:
            if sched[node].POLICY.upper() == "CONSTANT" and _changed(sched, defaults, f"{node}.{key}"):
                yield f"{node}.{key}", f"{node}.POLICY is CONSTANT"


def _run(cfg: Any, defaults: Any) -> Iterator[Tuple[str, str]]:
    dataset = cfg.DATA.DATASET
    for key, datasets in DATA_KEYS_BY_DATASET.items():  # a user's builder gets the config: it may read any
        if dataset not in datasets and not is_import_path(dataset) and _changed(cfg, defaults, f"DATA.{key}"):
            yield f"DATA.{key}", f"DATA.DATASET {dataset} does not read it"
    for node, reader in (("SHAPES", "shapes"), ("COCO", "coco")):
        for key in cfg.DATA[node]:
            if dataset != reader and _changed(cfg, defaults, f"DATA.{node}.{key}"):
                yield f"DATA.{node}.{key}", f"DATA.DATASET is {dataset}, not {reader}"
    solver = cfg.SOLVER
    if not solver.LR_SCALING.REFERENCE_BATCH_SIZE and _changed(cfg, defaults, "SOLVER.LR_SCALING.SCALE_SCHEDULE"):
        yield "SOLVER.LR_SCALING.SCALE_SCHEDULE", "LR_SCALING.REFERENCE_BATCH_SIZE is 0"
    if not solver.AMP.ENABLED and _changed(cfg, defaults, "SOLVER.AMP.DTYPE"):
        yield "SOLVER.AMP.DTYPE", "SOLVER.AMP.ENABLED is False"
    for key in cfg.DISTRIBUTED.FSDP:
        if cfg.DISTRIBUTED.STRATEGY.upper() != "FSDP" and _changed(cfg, defaults, f"DISTRIBUTED.FSDP.{key}"):
            yield f"DISTRIBUTED.FSDP.{key}", "DISTRIBUTED.STRATEGY is not FSDP"
    if not cfg.TRAIN.COMPILE and _changed(cfg, defaults, "TRAIN.COMPILE_MODE"):
        yield "TRAIN.COMPILE_MODE", "TRAIN.COMPILE is False"
    if not cfg.TRAIN.BEST_METRIC and _changed(cfg, defaults, "TRAIN.BEST_MODE"):
        yield "TRAIN.BEST_MODE", "TRAIN.BEST_METRIC is empty"
    for key in ("METRIC", "MIN_DELTA", "MODE"):
        if not cfg.TRAIN.EARLY_STOP.PATIENCE and _changed(cfg, defaults, f"TRAIN.EARLY_STOP.{key}"):
            yield f"TRAIN.EARLY_STOP.{key}", "TRAIN.EARLY_STOP.PATIENCE is 0 (early stopping is off)"
    for key in ("DECAY", "WARMUP_ITERS", "UPDATE_PERIOD"):
        if not solver.EMA.ENABLED and _changed(cfg, defaults, f"SOLVER.EMA.{key}"):
            yield f"SOLVER.EMA.{key}", "SOLVER.EMA.ENABLED is False"
    if "mlflow" not in cfg.TRAIN.LOGGERS and _changed(cfg, defaults, "TRAIN.MLFLOW_URI"):
        yield "TRAIN.MLFLOW_URI", "TRAIN.LOGGERS does not name mlflow"


def _own_keys(entry: Any, section: str) -> List[str]:
    """The dotted keys a named optimizer's entry sets itself in `section` (OPTIMIZER or SCHEDULER)."""
    def flatten(node: Dict[str, Any], prefix: str) -> Iterator[str]:
        for key, value in node.items():
            yield from flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return list(flatten(entry.get(section, {}), ""))


def ignored_keys(cfg: Any) -> List[Tuple[str, Any, str]]:
    """(full key, value, why it does nothing) for every key of a validated config that is set but unused."""
    defaults = get_cfg()
    found = [(key, lookup(cfg, key), why) for key, why in _run(cfg, defaults)]
    sections = (("OPTIMIZER", _optimizer), ("SCHEDULER", _scheduler))
    for name, check in sections:
        found += [(f"SOLVER.{name}.{key}", lookup(cfg.SOLVER[name], key), why)
                  for key, why in check(cfg.SOLVER[name], defaults.SOLVER[name])]
    for entry_name, entry in optimizer_entries(cfg.SOLVER).items():
        if not entry_name:
            continue
        raw = cfg.SOLVER.OPTIMIZERS[entry_name]
        for name, check in sections:
            own = _own_keys(raw, name)
            found += [(f"SOLVER.OPTIMIZERS.{entry_name}.{name}.{key}", lookup(entry[name], key), why)
                      for key, why in check(entry[name], defaults.SOLVER[name]) if key in own]
    return found
