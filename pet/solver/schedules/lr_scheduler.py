"""The scheduler: `ClosedFormScheduler`, a thin torch adapter over a pure `LRSchedule`, and
`LearningRateScheduler`, its SOLVER config adapter (Pet's API).

The lr of group g after k updates is always initial_lr_g * ft_factor * f(k), computed from scratch: never from the
current lr, so a hand edit, a resume or a second scheduler cannot compound. Other fields (momentum, weight decay)
follow their own closed forms (`scheduled_fields`). `state_dict()` holds the update count; loading it rewrites
every group's values, so the first update after a resume runs exactly as in an uninterrupted run.
"""
import logging
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

from pet.config import validate_scheduler_cfg
from pet.config.schema import check_section
from pet.config.solver_keys import SOLVER
from pet.solver.param_groups.report import group_names
from pet.solver.schedules.from_config import scheduler_arguments
from pet.solver.schedules.lr_schedule import LRSchedule
from pet.solver.schedules.scheduled_fields import ScheduledField
from pet.state_fields import require_fields

logger = logging.getLogger(__name__)


class ClosedFormScheduler(LRScheduler):
    """Sets every group's lr to initial_lr * ft_factor * f(k), where k is the number of optimizer updates done.

    Args:
        optimizer: the optimizer whose groups it drives (their `lr` at construction is their base lr).
        schedule: f, the multiplier of update k.
        ft_factor: every lr's fine-tuning factor.
        fields: other group fields to schedule (momentum, weight decay).
        start_iter: k at construction, e.g. the iteration a run resumes from.
        log_threshold: log "Changing learning rate a -> b" where the lr jumps: two successive lrs differ by more
            than this ratio, and the two before did not (a milestone, a phase change; a warmup or a ramp logs
            its first big step only, not every step).
        log_prefix: put before those lines (which of several optimizers).

    Example:
        >>> scheduler = ClosedFormScheduler(optimizer, LRSchedule("COSINE", 1000, {"min_lr_factor": 0.0}))
        >>> for k in range(1000): ...; optimizer.step(); scheduler.step()
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LRSchedule, ft_factor: float = 1.0,
                 fields: Sequence[ScheduledField] = (), start_iter: int = 0, log_threshold: float = 1.1,
                 log_prefix: str = "") -> None:
        if not isinstance(start_iter, int) or isinstance(start_iter, bool) or start_iter < 0:
            raise ValueError(f"start_iter must be an integer >= 0, got {start_iter!r}")
        self.schedule = schedule
        self.ft_factor = float(ft_factor)
        self.fields = list(fields)
        self.log_threshold = float(log_threshold)
        self._log_prefix = log_prefix
        self._factor: Optional[float] = None
        self._was_big_change = False
        for group in optimizer.param_groups:
            group.setdefault("initial_weight_decay", group.get("weight_decay", 0.0))
        super().__init__(optimizer, last_epoch=-1)  # records initial_lr, then calls step() once: k = 0
        self.reference_lr = max(self.base_lrs) * self.ft_factor  # the lr the log lines speak of
        names = group_names(optimizer)
        self._reference_note = "" if len(names) < 2 else \
            f" (group {names[self.base_lrs.index(max(self.base_lrs))]}; the other groups in proportion)"
        if self.ft_factor != 1.0:  # the group table shows the lrs before this factor
            logger.info("%sSOLVER.LR_SCALING.FT_FACTOR %g: the groups train at %s", log_prefix, self.ft_factor,
                        ", ".join(f"{name} {lr * self.ft_factor:.6g}" for name, lr in zip(names, self.base_lrs)))
        self.last_epoch = start_iter
        self._apply(log=False)

    def field(self, name: str) -> Optional[ScheduledField]:
        """The scheduled field named `name` (momentum, weight_decay), or None when that field is not scheduled."""
        return next((field for field in self.fields if field.name == name), None)

    def get_lr(self) -> List[float]:
        """The closed-form lr of every group at the current update count."""
        return self._lrs(self.schedule(self.last_epoch))

    def _lrs(self, factor: float) -> List[float]:
        return [base_lr * factor * self.ft_factor for base_lr in self.base_lrs]

    def step(self, epoch: Optional[int] = None) -> None:
        """Advance by one optimizer update and write the new values into every group."""
        if epoch is not None:
            raise TypeError("the scheduler's step() takes no epoch: it counts optimizer updates")
        self._step_count += 1
        self.last_epoch += 1
        self._apply(log=self.last_epoch > 1)

    def _apply(self, log: bool) -> None:
        k = self.last_epoch
        factor = self.schedule(k)
        lrs = self._lrs(factor)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs
        for field in self.fields:
            field.write(self.optimizer.param_groups, k, factor)
        big = self._factor is not None and self._is_big_change(self._factor, factor)
        if log and big and not self._was_big_change:
            logger.info("%sChanging learning rate %.7f -> %.7f%s", self._log_prefix, self._factor * self.reference_lr,
                        factor * self.reference_lr, self._reference_note)
        self._factor, self._was_big_change = factor, big

    def _is_big_change(self, old: float, new: float) -> bool:
        # As Pet: the ratio of the two lrs beyond the threshold, and not a drop to (nearly) zero.
        if old == new or new * self.reference_lr <= 1e-7 or old <= 0:
            return False
        return max(new / old, old / new) > self.log_threshold

    def state_dict(self) -> Dict[str, Any]:
        """The update count and the group names it applies to: the lrs themselves come from the config."""
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count,
                "group_names": group_names(self.optimizer)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Resume at the saved update count and rewrite every group's lr from its initial_lr."""
        require_fields(state_dict, {"last_epoch": int, "_step_count": int, "group_names": list}, "scheduler")
        saved, current = state_dict["group_names"], group_names(self.optimizer)
        if list(saved) != current:
            raise ValueError(f"scheduler state was saved for param groups {list(saved)}, but the optimizer now "
                             f"has {current}; the model or the grouping rules changed since the checkpoint")
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self.base_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]
        self._factor = None
        self._apply(log=False)
        logger.info("%sLearning rate %.7f at update %d (resumed)", self._log_prefix,
                    self._factor * self.reference_lr, self.last_epoch)


class LearningRateScheduler(ClosedFormScheduler):
    """The scheduler of SOLVER.SCHEDULER and SOLVER.LR_SCALING.FT_FACTOR (Pet's API).

    Args:
        optimizer: the optimizer whose groups it drives.
        solver_cfg: the SOLVER node (or a named optimizer's entry); its SCHEDULER and LR_SCALING are validated here.
        start_iter: k at construction, e.g. the iteration a run resumes from.
        iter_per_epoch: iterations per epoch; needed only for epoch units.
        prefix: the config key of `solver_cfg`, for error messages.

    Example:
        >>> scheduler = LearningRateScheduler(optimizer, cfg.SOLVER, start_iter=0, iter_per_epoch=-1)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, solver_cfg: Any, start_iter: int = 0,
                 iter_per_epoch: int = -1, prefix: str = "SOLVER") -> None:
        validate_scheduler_cfg(solver_cfg.SCHEDULER, prefix=f"{prefix}.SCHEDULER")
        check_section(solver_cfg.LR_SCALING, SOLVER["LR_SCALING"], f"{prefix}.LR_SCALING")
        super().__init__(optimizer, start_iter=start_iter,
                         **scheduler_arguments(optimizer, solver_cfg, iter_per_epoch, prefix))
