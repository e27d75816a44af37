"""The solver: `Optimizer` (param groups, clipping, kernels) and `LearningRateScheduler` (closed-form lr)."""
from pet.solver.gradient_guard import GradientClipper
from pet.solver.lars import LARS
from pet.solver.lr_scheduler import LearningRateScheduler, lr_schedule_from_cfg
from pet.solver.optimizer import Optimizer
from pet.solver.report import format_param_groups
from pet.solver.schedules import LRSchedule

__all__ = [
    "GradientClipper",
    "LARS",
    "LRSchedule",
    "LearningRateScheduler",
    "Optimizer",
    "format_param_groups",
    "lr_schedule_from_cfg",
]
