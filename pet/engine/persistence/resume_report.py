"""What a resumed run takes from its checkpoint and what from its config.

State comes from the checkpoint: parameters, optimizer moments and step counts, the iteration, the RNG states, the
data position, the trainer's skip counters. Hyperparameters come from the config: lrs, weight decays, momenta,
schedule keys, the run length. Every key that differs from the config stored in the checkpoint is logged once, so
a resume with a new BASE_LR or a longer schedule is visible; changes that make the rest of the run differ from an
uninterrupted one (the batch, the seed, the data, the number of processes) are logged as warnings.
"""
import logging
from typing import Any, Dict, List, Optional, Tuple

import yaml

logger = logging.getLogger(__name__)

# Keys whose change makes the resumed run's batches differ from those of an uninterrupted run.
ORDER_KEYS = ("SEED", "TRAIN.BATCH_SIZE", "SOLVER.ACCUMULATION.STEPS", "DATA.")


def flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    """{"SOLVER.OPTIMIZER.BASE_LR": 0.1, ...} for a nested mapping."""
    leaves: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            leaves.update(flatten(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def saved_config(saved_text: Any) -> Optional[Dict[str, Any]]:
    """The config a checkpoint stores, as a mapping; None when it holds none that reads as one."""
    try:
        saved = yaml.safe_load(saved_text) if isinstance(saved_text, str) else None
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def config_changes(saved_text: str, cfg: Any) -> List[Tuple[str, Any, Any]]:
    """(key, value in the checkpoint's config, value now) for every key that differs, in key order."""
    before, now = flatten(saved_config(saved_text) or {}), flatten(yaml.safe_load(cfg.dump()))
    return [(key, before.get(key), now.get(key)) for key in sorted(set(before) | set(now))
            if before.get(key) != now.get(key)]


def report_resume(checkpoint: Dict[str, Any], cfg: Any, world_size: int) -> None:
    """Log what the resumed run changes against the run that wrote `checkpoint`."""
    if saved_config(checkpoint.get("config")) is None:
        logger.warning("The checkpoint holds no readable config: the keys this run changes are not reported")
    changes = config_changes(checkpoint["config"], cfg) if saved_config(checkpoint.get("config")) else []
    for key, before, now in changes:
        logger.info("Resuming with %s = %r (the checkpoint's run had %r)", key, now, before)
    breaking = [f"{key} {before!r} -> {now!r}" for key, before, now in changes if key.startswith(ORDER_KEYS)]
    saved_world = checkpoint.get("world_size", world_size)
    if not isinstance(saved_world, int) or isinstance(saved_world, bool) or saved_world < 1:
        logger.warning("The checkpoint names %r processes, not a count: the data continue at its saved position",
                       saved_world)
    elif saved_world != world_size:
        logger.warning("The world size changed: the checkpoint was written by %d processes, this run has %d; the "
                       "data continue at the sample where they stopped", saved_world, world_size)
        breaking.append(f"processes {saved_world} -> {world_size}")
    if breaking:
        logger.warning("The resumed run's batches differ from those of an uninterrupted run: %s",
                       ", ".join(breaking))
