"""The optimizers of a run: one `SolverUnit` per optimizer, each with its scheduler, modules, losses and step
interval, built from a validated SOLVER config.

A run with one optimizer has one unit (named ""); SOLVER.OPTIMIZERS gives one unit per entry (SpeeChain's
optim_loss / updated_modules / step_per_update, MMEngine's OptimWrapperDict). The trainer treats both alike.
"""
import difflib
import logging
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import torch
from torch import nn

from pet.config import optimizer_entries
from pet.errors import ConfigError
from pet.solver.optimizers.builder import GuardedOptimizer, Optimizer
from pet.solver.optimizers.guard import GradientGuard
from pet.solver.param_groups.report import group_names
from pet.solver.param_groups.routes import Selector, route_parameters
from pet.solver.param_groups.rules import in_modules, trainable_parameters
from pet.solver.schedules.from_config import lr_schedule_from_cfg
from pet.solver.schedules.lr_scaling import apply_linear_scaling, scaling_ratio
from pet.solver.schedules.lr_scheduler import ClosedFormScheduler, LearningRateScheduler

logger = logging.getLogger(__name__)


@dataclass
class SolverUnit:
    """One optimizer of a run.

    Attributes:
        name: the entry name under SOLVER.OPTIMIZERS ("" for the single optimizer).
        optimizer, scheduler: the torch optimizer and its closed-form scheduler (k = the run's iteration).
        guard: the optimizer's gradient guard (its per-step verdict, skip count and gradient norm), or None.
        configured_keys: the param-group keys a resume takes from the config (None: every hyperparameter).
        losses: names of the losses it minimises (all when empty).
        step_interval: it steps after every `step_interval` iterations; gradients are averaged in between.
    """

    name: str
    optimizer: torch.optim.Optimizer
    scheduler: Optional[ClosedFormScheduler] = None
    guard: Optional[GradientGuard] = None
    configured_keys: Optional[FrozenSet[str]] = None
    losses: Tuple[str, ...] = ()
    step_interval: int = 1

    @classmethod
    def of(cls, built: GuardedOptimizer, name: str = "", **fields: Any) -> "SolverUnit":
        """The unit of an optimizer built by `Optimizer(...).build_guarded()` (its guard and keys carried over)."""
        return cls(name, built.optimizer, guard=built.guard, configured_keys=built.configured_keys, **fields)

    def is_due(self, iteration: int) -> bool:
        """Whether it steps at the end of `iteration`."""
        return (iteration + 1) % self.step_interval == 0

    def params(self) -> List[torch.Tensor]:
        """Every parameter it updates."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def group_labels(self) -> List[str]:
        """A label per param group: `<group>`, or `<optimizer>/<group>` for a named optimizer."""
        return [f"{self.name}/{name}" if self.name else name for name in group_names(self.optimizer)]

    def computes_norm(self) -> bool:
        """Whether its guard computes the gradients' global norm (`full_model` or `norm` clipping)."""
        return self.guard is not None and self.guard.clip_type in ("full_model", "norm")


def check_modules(model: nn.Module, modules: Tuple[str, ...], key: str) -> None:
    """A `ConfigError` for a name in `modules` that is not a submodule of `model` (a typo would otherwise leave
    that part of the model untrained without a word), or for modules without trainable parameters."""
    known = dict(model.named_modules())
    for module in modules:
        if module not in known:
            close = difflib.get_close_matches(module, [name for name in known if name], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            top = ", ".join(name for name, _ in model.named_children())
            raise ConfigError(f"{key}: {module!r} is not a module of the model; {hint}its top-level modules: {top}")
    if modules and not any(in_modules(name, modules) for name, _, _, _ in trainable_parameters(model)):
        raise ConfigError(f"{key} = {tuple(modules)!r}: these modules have no trainable parameters (all frozen)")


def build_solver_units(model: nn.Module, solver_cfg: Any, iter_per_epoch: int = -1,
                       images_per_update: int = 0) -> List[SolverUnit]:
    """One unit per optimizer of the (validated) SOLVER config, in config order, each on the parameters its entry
    selects (`routes`); with the linear scaling rule applied for `images_per_update` (when LR_SCALING asks for
    it)."""
    entries = optimizer_entries(solver_cfg)
    keys = {name: f"SOLVER.OPTIMIZERS.{name}" if name else "SOLVER" for name in entries}
    for name, entry in entries.items():
        check_modules(model, entry.MODULES, f"{keys[name]}.MODULES")
    routes: Dict[str, Optional[List[str]]] = {"": None}  # the single optimizer: every parameter
    if solver_cfg.OPTIMIZERS:
        routes = dict(route_parameters(model, {name: Selector.of_entry(entry) for name, entry in entries.items()},
                                       keys))
    units = []
    for name, entry in entries.items():
        entry = apply_linear_scaling(entry, images_per_update)
        # Pet's own builders: what a user's loop calls is what a run trains with.
        built = Optimizer(model, entry.OPTIMIZER, key=f"{keys[name]}.OPTIMIZER", names=routes[name]).build_guarded()
        scheduler = LearningRateScheduler(built.optimizer, entry, iter_per_epoch=iter_per_epoch, prefix=keys[name])
        units.append(SolverUnit.of(built, name, scheduler=scheduler, losses=entry.LOSSES,
                                   step_interval=entry.STEP_INTERVAL))
    if solver_cfg.OPTIMIZERS:
        logger.info("Routes of the parameters (SOLVER.OPTIMIZERS):\n%s", format_routes(units))
        _warn_untrained(model, units)
    return units


def format_routes(units: List[SolverUnit]) -> str:
    """A fixed-width table of the routes: entry, optimizer class, groups, tensors, parameters."""
    rows = [("entry", "optimizer", "groups", "tensors", "parameters")]
    for unit in units:
        params = unit.params()
        rows.append((unit.name or "(all)", type(unit.optimizer).__name__, str(len(unit.optimizer.param_groups)),
                     str(len(params)), f"{sum(p.numel() for p in params):,}"))
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if col < 2 else cell.rjust(w)
                               for col, (cell, w) in enumerate(zip(row, widths))) for row in rows)


def images_per_update(cfg: Any, world_size: int = 1) -> int:
    """Images behind one optimizer update: TRAIN.BATCH_SIZE x processes x SOLVER.ACCUMULATION.STEPS."""
    return cfg.TRAIN.BATCH_SIZE * world_size * cfg.SOLVER.ACCUMULATION.STEPS


def build_run_solver(model: nn.Module, cfg: Any, iter_per_epoch: int, world_size: int = 1
                     ) -> Tuple[List[SolverUnit], int]:
    """The optimizers of a run and its length in iterations (the top-level schedule's), from the whole
    (validated) config. A named optimizer whose schedule is longer than the run is a `ConfigError`."""
    images = images_per_update(cfg, world_size)
    ratio = scaling_ratio(cfg.SOLVER, images)
    if ratio is not None:
        logger.info("Linear scaling rule: %d images per update / REFERENCE_BATCH_SIZE %d = %.4g x every BASE_LR%s",
                    images, cfg.SOLVER.LR_SCALING.REFERENCE_BATCH_SIZE, ratio,
                    f"; iteration counts x {1 / ratio:.4g}" if cfg.SOLVER.LR_SCALING.SCALE_SCHEDULE else "")
    units = build_solver_units(model, cfg.SOLVER, iter_per_epoch, images)
    max_iter = lr_schedule_from_cfg(apply_linear_scaling(cfg.SOLVER, images), iter_per_epoch).total_iters
    for unit in units:
        if unit.name and unit.scheduler.schedule.total_iters > max_iter:
            raise ConfigError(f"SOLVER.OPTIMIZERS.{unit.name}.SCHEDULER runs {unit.scheduler.schedule.total_iters} "
                              f"iterations, longer than the run's {max_iter} (SOLVER.SCHEDULER); its schedule would "
                              "be cut short")
        warn_long_warmup(unit)
    return units, max_iter


def warn_long_warmup(unit: SolverUnit) -> None:
    """One warning when the warmup does not end before the run does: the lr never reaches BASE_LR (legal, for
    smoke runs)."""
    schedule = unit.scheduler.schedule
    if schedule.warmup_iters >= schedule.total_iters:
        key = f"SOLVER.OPTIMIZERS.{unit.name}.SCHEDULER" if unit.name else "SOLVER.SCHEDULER"
        logger.warning("%s.WARM_UP_ITERS = %d updates is not shorter than the run (%s.TOTAL_ITERS = %d updates): "
                       "the lr never reaches BASE_LR", key, schedule.warmup_iters, key, schedule.total_iters)


def _warn_untrained(model: nn.Module, units: List[SolverUnit]) -> None:
    """One warning for the trainable parameters no entry takes: they will not train."""
    taken = {id(p) for unit in units for p in unit.params()}
    left = [name for name, _, _, param in trainable_parameters(model) if id(param) not in taken]
    if left:
        logger.warning("%d trainable parameters are in no SOLVER.OPTIMIZERS entry and will not train, e.g. %s",
                       len(left), left[0])


def check_unit_support(units: List[SolverUnit], amp_dtype: Optional[torch.dtype], world_size: int,
                       sharded: bool) -> None:
    """Refuse the combinations of several optimizers, mixed precision and sharding that the trainer cannot run
    correctly."""
    if sharded and amp_dtype == torch.float16:
        raise ConfigError("SOLVER.AMP.DTYPE float16 cannot be combined with DISTRIBUTED.STRATEGY FSDP (its GradScaler "
                          "would check each process's shards alone); use bfloat16, or DISTRIBUTED.FSDP.PARAM_DTYPE")
    if sharded and any(unit.losses for unit in units):
        raise ConfigError("SOLVER.OPTIMIZERS.*.LOSSES cannot be combined with DISTRIBUTED.STRATEGY FSDP: its "
                          "gradients reach the sharded parameters through one backward pass over all of them")
    if amp_dtype == torch.float16 and any(unit.step_interval > 1 for unit in units):
        raise ConfigError("SOLVER.OPTIMIZERS.*.STEP_INTERVAL > 1 cannot be combined with SOLVER.AMP.DTYPE float16 "
                          "(one GradScaler cannot unscale gradients summed under different scales); use bfloat16")
    if world_size > 1 and any(unit.losses for unit in units):
        raise ConfigError("SOLVER.OPTIMIZERS.*.LOSSES needs a single process: DDP reduces the gradients of one "
                          "backward pass over all parameters")
