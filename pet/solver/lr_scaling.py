"""The linear scaling rule (Goyal et al., 2017): lr proportional to the images per update.

With SOLVER.LR_SCALING.REFERENCE_BATCH_SIZE = R > 0, every BASE_LR is meant for R images per update and is
multiplied by B / R for the real B (TRAIN.BATCH_SIZE x processes x ACCUMULATION.STEPS). With SCALE_SCHEDULE, the
counts in iterations (TOTAL_ITERS, STEPS, WARM_UP_ITERS, NOAM.WARMUP_ITERS, CHAIN.PHASES) are multiplied by R / B,
so that the run sees the same number of images; epoch units need no change.
"""
import logging
from typing import Any

from pet.config.validation import OWN_RISE_POLICIES

logger = logging.getLogger(__name__)


def _scale_iterations(sched: Any, ratio: float, in_iterations: bool, policy: str) -> None:
    """Multiply the iteration counts present in a SCHEDULER node by `ratio` (in place); TOTAL_ITERS, STEPS and
    CHAIN phases only when the schedule counts in iterations, the generic warmup only for policies that use it."""
    def scaled(value: float) -> int:
        return max(1, int(round(value * ratio)))

    if "TOTAL_ITERS" in sched and in_iterations:
        sched.TOTAL_ITERS = scaled(sched.TOTAL_ITERS)
    if "STEPS" in sched and in_iterations:
        sched.STEPS = tuple(scaled(s) for s in sched.STEPS)
    if "WARM_UP_ITERS" in sched and sched.WARM_UP_ITERS and policy not in OWN_RISE_POLICIES:
        sched.WARM_UP_ITERS = scaled(sched.WARM_UP_ITERS)
    if "NOAM" in sched and "WARMUP_ITERS" in sched.NOAM:
        sched.NOAM.WARMUP_ITERS = scaled(sched.NOAM.WARMUP_ITERS)
    if "CHAIN" in sched and "PHASES" in sched.CHAIN and in_iterations:
        sched.CHAIN.PHASES = tuple((p, int(round(b * ratio)), scaled(e)) for p, b, e in sched.CHAIN.PHASES)


def apply_linear_scaling(solver_cfg: Any, images_per_update: int) -> Any:
    """The SOLVER node with every BASE_LR (and with SCALE_SCHEDULE the iteration counts) scaled; unchanged (the
    same object) when REFERENCE_BATCH_SIZE is 0."""
    reference = solver_cfg.LR_SCALING.REFERENCE_BATCH_SIZE
    if not reference:
        return solver_cfg
    ratio = images_per_update / reference
    scaled = solver_cfg.clone()
    optimizer_nodes = [scaled.OPTIMIZER] + [e["OPTIMIZER"] for e in scaled.OPTIMIZERS.values() if "OPTIMIZER" in e]
    for node in optimizer_nodes:
        if "BASE_LR" in node:
            node.BASE_LR = node.BASE_LR * ratio
    if scaled.LR_SCALING.SCALE_SCHEDULE:
        top = scaled.SCHEDULER
        _scale_iterations(top, 1.0 / ratio, top.TOTAL_EPOCHS is None, top.POLICY.upper())
        for entry in scaled.OPTIMIZERS.values():
            if "SCHEDULER" in entry:  # a named optimizer's own keys; the others are inherited from the top level
                sched = entry["SCHEDULER"]
                _scale_iterations(sched, 1.0 / ratio, sched.get("TOTAL_EPOCHS", top.TOTAL_EPOCHS) is None,
                                  sched.get("POLICY", top.POLICY).upper())
    logger.info("Linear scaling rule: %d images per update / REFERENCE_BATCH_SIZE %d = %.4g x every BASE_LR%s",
                images_per_update, reference, ratio,
                f"; iteration counts x {1 / ratio:.4g}" if scaled.LR_SCALING.SCALE_SCHEDULE else "")
    return scaled
