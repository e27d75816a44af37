"""The solver: parameter groups, the optimizer with its gradient guard, and the closed-form lr scheduler.

Plain-argument cores (`build_param_groups`, `build_optimizer`, `ClosedFormScheduler`, `GradientGuard`) under
thin config adapters with Pet's names (`Optimizer(model, cfg.SOLVER.OPTIMIZER).build()`,
`LearningRateScheduler(optimizer, cfg.SOLVER, start_iter, iter_per_epoch)`), which a run's solver units are built
with too.
"""
from pet.solver.optimizers.builder import (GuardedOptimizer, Optimizer, OptimizerSpec, build_guarded_optimizer,
                                           build_optimizer)
from pet.solver.optimizers.guard import GradientGuard, add_gradient_guard
from pet.solver.optimizers.lars import LARS
from pet.solver.param_groups.report import format_param_groups
from pet.solver.param_groups.rules import GroupRules, build_param_groups
from pet.solver.schedules.from_config import lr_schedule_from_cfg
from pet.solver.schedules.lr_schedule import LRSchedule
from pet.solver.schedules.lr_scheduler import ClosedFormScheduler, LearningRateScheduler

__all__ = [
    "ClosedFormScheduler",
    "GradientGuard",
    "GroupRules",
    "GuardedOptimizer",
    "LARS",
    "LRSchedule",
    "LearningRateScheduler",
    "Optimizer",
    "OptimizerSpec",
    "add_gradient_guard",
    "build_guarded_optimizer",
    "build_optimizer",
    "build_param_groups",
    "format_param_groups",
    "lr_schedule_from_cfg",
]
