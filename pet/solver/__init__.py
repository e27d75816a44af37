"""The solver: parameter groups, the optimizer with its gradient guard, and the closed-form lr scheduler.

Plain-argument cores (`build_param_groups`, `build_optimizer`, `ClosedFormScheduler`, `GradientClipper`) under
thin config adapters with Pet's names (`Optimizer(model, cfg.SOLVER.OPTIMIZER).build()`,
`LearningRateScheduler(optimizer, cfg.SOLVER, start_iter, iter_per_epoch)`).
"""
from pet.solver.optimizers.guard import GradientClipper, add_gradient_clipping
from pet.solver.optimizers.lars import LARS
from pet.solver.schedules.lr_scheduler import ClosedFormScheduler, LearningRateScheduler
from pet.solver.optimizers.builder import Optimizer, OptimizerSpec, build_optimizer
from pet.solver.param_groups.rules import GroupRules, build_param_groups
from pet.solver.param_groups.report import format_param_groups
from pet.solver.schedules.from_config import lr_schedule_from_cfg
from pet.solver.schedules.lr_schedule import LRSchedule

__all__ = [
    "ClosedFormScheduler",
    "GradientClipper",
    "GroupRules",
    "LARS",
    "LRSchedule",
    "LearningRateScheduler",
    "Optimizer",
    "OptimizerSpec",
    "add_gradient_clipping",
    "build_optimizer",
    "build_param_groups",
    "format_param_groups",
    "lr_schedule_from_cfg",
]
