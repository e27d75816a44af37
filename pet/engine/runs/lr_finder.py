"""The lr range test on a config: the run `tools/train_net.py` would make (model, data, param groups with their lr
factors, clipping, AMP, accumulation, processes), but with the lr swept exponentially instead of scheduled.

The sweep moves the config's SOLVER.OPTIMIZER.BASE_LR: every group keeps its lr relative to the base lr (bias,
backbone and layer-decay factors, the lr scaling rule), so the suggested value goes back into the config as it
is. Under torchrun every update's loss is the mean over processes (as in training), so every process makes the
same decisions; rank 0 writes. Nothing is saved but what the caller writes: no checkpoint, no config.yaml.
"""
import logging
from typing import Any, Iterator, List, Tuple

import torch

from pet.data import build_train_loader
from pet.engine.loop.update_step import UpdateStep
from pet.engine.runs.runner import build_setup
from pet.errors import ConfigError
from pet.solver.optimizers.schedule_free import training_mode
from pet.solver.schedules.lr_range import LRSweep

logger = logging.getLogger(__name__)

PROGRESS_LINES = 10  # progress lines logged over a sweep


def relative_lrs(optimizer: Any, cfg: Any) -> List[float]:
    """Each group's lr as a multiple of SOLVER.OPTIMIZER.BASE_LR (its lr factors and the scaling rule)."""
    factor = cfg.SOLVER.LR_SCALING.FT_FACTOR / cfg.SOLVER.OPTIMIZER.BASE_LR
    return [group["initial_lr"] * factor for group in optimizer.param_groups]


def check_single_optimizer(cfg: Any) -> None:
    """The sweep moves SOLVER.OPTIMIZER.BASE_LR: named optimizers (each with its own base lr) are refused."""
    if cfg.SOLVER.OPTIMIZERS:
        raise ConfigError(f"SOLVER.OPTIMIZERS names {', '.join(sorted(cfg.SOLVER.OPTIMIZERS))}: the lr finder sweeps "
                          "SOLVER.OPTIMIZER.BASE_LR of a single optimizer; find each one's lr in a run of its own")


def build_sweep_step(cfg: Any) -> Tuple[UpdateStep, torch.optim.Optimizer, Iterator[Any]]:
    """(update step, its optimizer, the training batches) of a fresh run of `cfg`, set up as train_net sets one up
    (MODEL.WEIGHTS, FSDP, DDP and mixed precision included)."""
    check_single_optimizer(cfg)
    setup = build_setup(cfg)
    step = UpdateStep(setup.step_model(), setup.data.task.loss_fn, setup.solver.units, setup.device,
                      **setup.step_options(cfg))
    batches = iter(build_train_loader(cfg, setup.data.train_set, setup.rank, setup.world_size))
    return step, setup.solver.units[0].optimizer, batches


def find_lr(cfg: Any, start: float, end: float, iters: int) -> LRSweep:
    """Sweep the base lr of `cfg` from `start` to `end` over `iters` updates (stopping early at divergence)."""
    sweep = LRSweep(start, end, iters)
    step, optimizer, batches = build_sweep_step(cfg)
    relative = relative_lrs(optimizer, cfg)
    training_mode([optimizer])  # a schedule-free optimizer steps on its training weights
    logger.info("Sweeping SOLVER.OPTIMIZER.BASE_LR from %g to %g over %d updates", start, end, iters)
    for i in range(iters):
        for group, factor in zip(optimizer.param_groups, relative):
            group["lr"] = sweep.lr(i) * factor
        stop = sweep.record(step(batches, i).total.item())  # the sweep decides on every loss
        if stop or (i + 1) % max(1, iters // PROGRESS_LINES) == 0:
            logger.info("lr_find: update %d/%d  base lr %.3g  loss %.4g  smoothed %.4g", i + 1, iters, sweep.lrs[-1],
                        sweep.losses[-1], sweep.smoothed[-1])
        if stop:
            logger.info("The smoothed loss diverged at base lr %.3g: sweep stopped", sweep.lrs[-1])
            break
    return sweep
