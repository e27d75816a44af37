"""Stopping a trial's run early: `PruningHook` hands each mid-run evaluation to the search's pruner and stops the
run when it says so; under torchrun rank 0 decides and every process stops after the same iteration."""
import logging
from typing import Any, Callable, Optional

import torch.distributed as dist

from pet.config import ConfigError
from pet.engine.distributed.process_group import get_world_size, is_main_process
from pet.engine.loop.hooks import EvalHook, HookBase

logger = logging.getLogger(__name__)

# Rank 0's pruner: (the metric's value, the iteration it was evaluated at) -> whether to stop the run.
ShouldPrune = Callable[[float, int], bool]


class MetricMissing(ConfigError):
    """--metric names no result of the evaluation: every trial would fail the same way, so the search stops."""


class Pruned(BaseException):
    """A run the pruner stopped after an evaluation. A `BaseException`, as `KeyboardInterrupt` is: a run stopped on
    purpose has not failed, so `train` records no failure for it, and no `except Exception` takes it for one."""

    def __init__(self, iteration: int, value: float) -> None:
        super().__init__(f"pruned after the evaluation at iteration {iteration} (value {value:.6g})")
        self.iteration, self.value = iteration, value


class PruningHook(HookBase):
    """After each mid-run evaluation (TRAIN.EVAL_PERIOD), rank 0 hands `metric`'s value and the iteration to
    `should_prune` (the other processes pass None) and every process raises `Pruned` at that same iteration when
    it answers yes. The final evaluation is the trial's value, not a step to prune on. A `metric` the evaluation
    does not report is `MetricMissing` in every process."""

    def __init__(self, metric: str, should_prune: Optional[ShouldPrune]) -> None:
        self.metric = metric
        self.should_prune = should_prune
        self.eval_hook: Optional[EvalHook] = None
        self._considered = -1  # the iteration of the last evaluation handed over

    def before_train(self) -> None:
        self.eval_hook = next((hook for hook in self.trainer.hooks if isinstance(hook, EvalHook)), None)

    def after_step(self) -> None:
        hook = self.eval_hook
        if hook is None or hook.evaluated_at != self.trainer.iter or hook.evaluated_at == self._considered:
            return
        self._considered = hook.evaluated_at
        verdict = from_rank_0(self.decide(hook.results, hook.evaluated_at))
        if isinstance(verdict, str):
            raise MetricMissing(verdict)
        if verdict:
            value = hook.results.get(self.metric, float("nan"))  # rank 0 checked it; here for the message
            logger.info("Pruned after the evaluation at iteration %d: %s = %.4f", hook.evaluated_at, self.metric,
                        value)
            raise Pruned(hook.evaluated_at, value)

    def decide(self, results: dict, iteration: int) -> Any:
        """Rank 0's verdict on an evaluation: True to stop, False to go on, or the message of a metric that is
        missing; None elsewhere (rank 0's is broadcast)."""
        if not is_main_process():
            return None
        if self.metric not in results:
            return (f"--metric {self.metric} is not among the evaluation's results "
                    f"({', '.join(results) or 'none'})")
        # A value that is not a number goes to the pruner too: Optuna's prune a diverged run rather than finish it.
        return bool(self.should_prune(float(results[self.metric]), iteration)) if self.should_prune else False


def from_rank_0(value: Any) -> Any:
    """Rank 0's `value` (picklable) in every process; the value itself with one process."""
    if get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
