"""The linear scaling rule (Goyal et al., 2017): lr proportional to the images per update.

With SOLVER.LR_SCALING.REFERENCE_BATCH_SIZE = R > 0, every BASE_LR is meant for R images per update and is
multiplied by B / R for the real B (TRAIN.BATCH_SIZE x processes x ACCUMULATION.STEPS). With SCALE_SCHEDULE, the
counts in iterations (TOTAL_ITERS, WARM_UP_ITERS, and the keys the policy declares as counts: STEPS,
NOAM.WARMUP_ITERS, CHAIN.PHASES) are multiplied by R / B, so that the run sees the same number of images; epoch
units need no change.
"""
from typing import Any, Optional

from pet.lr_policies import POLICIES, lookup, map_counts


def scaled_count(value: Any, ratio: float) -> Any:
    """A count times `ratio`, rounded, and at least 1 unless it was 0; lists and CHAIN phases element-wise."""
    return map_counts(value, lambda count: 0 if count == 0 else max(1, int(round(count * ratio))))


def scale_schedule_(sched: Any, ratio: float) -> None:
    """Multiply the iteration counts of a (whole) SCHEDULER node by `ratio`, in place; epoch units stay."""
    policy = POLICIES[sched.POLICY.upper()]
    in_iterations = sched.TOTAL_EPOCHS is None
    if in_iterations:
        sched.TOTAL_ITERS = scaled_count(sched.TOTAL_ITERS, ratio)
    if sched.WARM_UP_EPOCHS is None and not policy.own_rise:
        sched.WARM_UP_ITERS = scaled_count(sched.WARM_UP_ITERS, ratio)
    for key in (policy.counts if in_iterations else ()) + policy.iterations:
        *parents, leaf = key.split(".")
        node = lookup(sched, ".".join(parents)) if parents else sched
        node[leaf] = scaled_count(node[leaf], ratio)


def scaling_ratio(solver_cfg: Any, images_per_update: int) -> Optional[float]:
    """(images per update) / REFERENCE_BATCH_SIZE, or None when the rule is off."""
    reference = solver_cfg.LR_SCALING.REFERENCE_BATCH_SIZE
    return images_per_update / reference if reference else None


def apply_linear_scaling(solver_cfg: Any, images_per_update: int) -> Any:
    """A solver-like node (OPTIMIZER, SCHEDULER, LR_SCALING: the SOLVER node or a named optimizer's entry, its
    keys all present) with BASE_LR and, with SCALE_SCHEDULE, the iteration counts scaled; the same object when
    REFERENCE_BATCH_SIZE is 0."""
    ratio = scaling_ratio(solver_cfg, images_per_update)
    if ratio is None:
        return solver_cfg
    scaled = solver_cfg.clone()
    scaled.defrost()  # a clone of the run's frozen config
    scaled.OPTIMIZER.BASE_LR = scaled.OPTIMIZER.BASE_LR * ratio
    if scaled.LR_SCALING.SCALE_SCHEDULE:
        scale_schedule_(scaled.SCHEDULER, 1.0 / ratio)
    return scaled
