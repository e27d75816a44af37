"""Training hooks: each one does one job before/after training or a step.

The trainer calls every hook in registration order; `build_hooks` in `pet.engine.runs.runner` orders them so that
the lr of a step is recorded before the scheduler moves, metrics are written before a checkpoint is taken, and
evaluation results reach the writers of the same iteration.
"""
import logging
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional

import torch

from pet.engine.loop.writers import EventWriter
from pet.engine.persistence.checkpointer import Checkpointer, read_checkpoint_metadata
from pet.errors import CheckpointError, NonFiniteError, NonFiniteWeightsError, Preempted
from pet.solver.optimizers.ema import WeightEMA
from pet.state_fields import require_fields

logger = logging.getLogger(__name__)


class HookBase:
    """Base of all hooks; `trainer` is set when the hook is registered."""

    trainer: Any = None

    def before_train(self) -> None:
        """Called once before the first iteration."""

    def after_train(self) -> None:
        """Called once after the last iteration (or when training stops early)."""

    def before_step(self) -> None:
        """Called before each iteration."""

    def after_step(self) -> None:
        """Called after each iteration."""

    def is_last_iter(self) -> bool:
        """Whether the iteration that just ran is the run's last."""
        return self.trainer.iter + 1 >= self.trainer.max_iter

    def every(self, period: int) -> bool:
        """Whether the iteration that just ran ends a period of `period` iterations."""
        return period > 0 and (self.trainer.iter + 1) % period == 0


class IterationTimer(HookBase):
    """Records the wall time of each iteration as `time` and the part of it spent waiting for data as `data_time`,
    and logs the total at the end. With `compile_warm_up`, the first iteration (where torch.compile compiles) is
    logged once and left out of `time`, so that it does not distort the ETA."""

    def __init__(self, compile_warm_up: bool = False) -> None:
        self.compile_warm_up = compile_warm_up
        self._step_start = 0.0
        self._train_start = 0.0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        seconds = time.perf_counter() - self._step_start
        trainer = self.trainer
        data_seconds = trainer.data_wait.take()
        if self.compile_warm_up and trainer.iter == trainer.start_iter:
            logger.info("TRAIN.COMPILE: the first update took %.1f s (torch.compile compiling the model); it is left "
                        "out of `time` and the ETA", seconds)
            return
        trainer.storage.put_scalars(time=seconds, data_time=data_seconds)

    def after_train(self) -> None:
        done = self.trainer.iter + 1 - self.trainer.start_iter
        total = time.perf_counter() - self._train_start
        if done > 0:
            logger.info("Trained %d iterations in %.1f s (%.4f s / it)", done, total, total / done)


class LRSchedulerHook(HookBase):
    """Records the lr every group of every optimizer ran at, then steps every scheduler.

    Names: `lr/<group>` (`lr/<optimizer>/<group>` for named optimizers), and `lr` for the first group.
    """

    def __init__(self, units: List[Any]) -> None:
        self.units = units
        self._names: List[List[str]] = []

    def before_train(self) -> None:
        self._names = [[f"lr/{label}" for label in unit.group_labels()] for unit in self.units]

    def after_step(self) -> None:
        storage = self.trainer.storage
        for unit, names in zip(self.units, self._names):
            for name, group in zip(names, unit.optimizer.param_groups):
                storage.put_scalar(name, group["lr"])
        storage.put_scalar("lr", self.units[0].optimizer.param_groups[0]["lr"])
        for unit in self.units:
            unit.scheduler.step()


class SharedBuffersHook(HookBase):
    """After every update, runs `share` (FSDP: every process takes rank 0's buffers), before the weight average,
    evaluation and checkpoints see them."""

    def __init__(self, share: Callable[[], None]) -> None:
        self.share = share

    def after_step(self) -> None:
        self.share()


class GradNormHook(HookBase):
    """Records the global gradient norm that clipping computed anyway (of the true gradients, before clipping) as
    `grad_norm` (`grad_norm/<optimizer>` for named optimizers), at the iterations the writers write, as a tensor
    the writers read. Units whose clip type computes no norm are left out."""

    def __init__(self, units: List[Any], period: int) -> None:
        self.period = period
        named = len(units) > 1
        self._guards = {f"grad_norm/{unit.name}" if named else "grad_norm": unit.guard
                        for unit in units if unit.computes_norm()}

    def after_step(self) -> None:
        if not (self.every(self.period) or self.is_last_iter()):
            return
        for name, guard in self._guards.items():
            if guard.last_norm is not None:
                self.trainer.storage.put_scalar(name, guard.last_norm)


class EvalHook(HookBase):
    """Runs `evaluate()` every `period` iterations (0: never mid-run), and once more when training has run to
    its end: in `after_train`, after the final checkpoint is on disk, so a failing evaluation cannot lose it (not
    again where early stopping ended the run at an evaluation)."""

    def __init__(self, period: int, evaluate: Callable[[], Dict[str, float]]) -> None:
        self.period = period
        self.evaluate = evaluate
        self.results: Dict[str, float] = {}
        self.evaluated_at = -1  # the iteration of the latest evaluation

    def after_step(self) -> None:
        if self.every(self.period) and not self.is_last_iter():
            self._evaluate()

    def after_train(self) -> None:
        # An iteration is scored once: where early stopping ended the run, its evaluation is the final one.
        if (self.trainer.failure is None and self.trainer.iter + 1 >= self.trainer.max_iter
                and self.evaluated_at != self.trainer.iter):
            self._evaluate()

    def _evaluate(self) -> None:
        self.results = self.evaluate()
        self.evaluated_at = self.trainer.iter
        self.trainer.storage.put_scalars(**self.results)
        logger.info("Evaluation at iteration %d: %s", self.trainer.iter,
                    ", ".join(f"{k} = {v:.4f}" for k, v in self.results.items()))


class PeriodicWriter(HookBase):
    """Hands the storage to every writer every `period` iterations, at every iteration `eval_hook` evaluated (so
    that no evaluation is lost between two writes), and once more when training ends (the last iteration with its
    final evaluation, or what a stopped run recorded since the last write)."""

    def __init__(self, writers: List[EventWriter], period: int, eval_hook: Optional[EvalHook] = None) -> None:
        self.writers = writers
        self.period = period
        self.eval_hook = eval_hook
        self._written = -1  # the storage's version at the last write

    def after_step(self) -> None:
        evaluated = self.eval_hook is not None and self.eval_hook.evaluated_at == self.trainer.iter
        if (self.every(self.period) or evaluated) and not self.is_last_iter():
            self._write()

    def after_train(self) -> None:
        if self.trainer.storage.version != self._written:
            self._write()
        for writer in self.writers:
            writer.close()

    def _write(self) -> None:
        for writer in self.writers:
            writer.write(self.trainer.storage)
        self._written = self.trainer.storage.version


class PeriodicCheckpointer(HookBase):
    """Saves `model_<iter>.pth` every `period` iterations (in the background where the checkpointer writes so) and
    `model_final.pth` after the last one. When training stops early: `model_last_good.pth` on non-finite updates
    (skipped updates left the state as it was), and `model_<iter>.pth` where a stop signal stopped it. Those three
    are written at once, after any write in flight."""

    def __init__(self, checkpointer: Checkpointer, period: int) -> None:
        self.checkpointer = checkpointer
        self.period = period
        self._saved_at = -1

    def after_step(self) -> None:
        done = self.trainer.iter + 1
        if self.is_last_iter():
            self._save("model_final", done, wait=True)
        elif self.every(self.period):
            self._save(f"model_{done:07d}", done, wait=False)

    def after_train(self) -> None:
        failure, done = self.trainer.failure, self.trainer.iter + 1
        try:
            self.checkpointer.wait()
        except CheckpointError as e:
            if failure is None:
                raise
            logger.error("A checkpoint written in the background failed too: %s", e)
        if isinstance(failure, NonFiniteError) and not isinstance(failure, NonFiniteWeightsError):
            self._save("model_last_good", done, wait=True)
        elif isinstance(failure, Preempted) and self._saved_at != done:
            self._save(f"model_{done:07d}", done, wait=True)

    def _save(self, name: str, done: int, wait: bool) -> None:
        self.checkpointer.save(name, done, wait=wait)
        self._saved_at = done


def lower_is_better(metric: str) -> bool:
    """Whether a result is best when low, from its name: a loss (`val/loss`, `val/loss_cls`, `val/bbox_loss`), not a
    name that merely contains the letters (`val/AP-blossom`)."""
    last = metric.rsplit("/", 1)[-1].lower()
    return last == "loss" or last.startswith("loss_") or last.endswith("_loss")


class BestCheckpointer(HookBase):
    """Keeps `model_best.pth` (a folder under FSDP): a checkpoint of the evaluation that scored best so far by
    `metric` (TRAIN.BEST_METRIC), highest or lowest by `mode` (TRAIN.BEST_MODE; empty: lowest for a loss). A score
    that is not finite is never the best. The score is kept in the checkpoint, so a resumed run compares with it;
    `last_checkpoint` keeps naming the newest checkpoint, not the best."""

    def __init__(self, checkpointer: Checkpointer, metric: str, eval_hook: EvalHook, mode: str = "") -> None:
        self.checkpointer = checkpointer
        self.metric = metric
        self.eval_hook = eval_hook
        self.mode = mode or ("min" if lower_is_better(metric) else "max")
        self.sign = -1.0 if self.mode == "min" else 1.0
        self.best = best_score_on_disk(checkpointer, metric)
        self._considered = -1
        logger.info("model_best: the evaluation with the %s %s (TRAIN.BEST_MODE %s%s)",
                    "lowest" if self.mode == "min" else "highest", metric, self.mode,
                    "" if mode else ", from the metric's name")

    def after_step(self) -> None:
        self._consider()

    def after_train(self) -> None:
        self._consider()

    def _consider(self) -> None:
        hook = self.eval_hook
        if hook.evaluated_at in (-1, self._considered):
            return
        self._considered = hook.evaluated_at
        if self.metric not in hook.results:
            logger.warning("TRAIN.BEST_METRIC = %r is not among the evaluation's results (%s): no model_best is kept",
                           self.metric, ", ".join(hook.results))
            return
        score = hook.results[self.metric]
        if not math.isfinite(score):
            logger.warning("%s = %s at iteration %d is not a score: model_best stays as it is", self.metric, score,
                           hook.evaluated_at + 1)
            return
        if self.best is None or self.sign * score > self.sign * self.best:
            self.checkpointer.save("model_best", hook.evaluated_at + 1, mark=False,
                                   extra={"best": {self.metric: score}})
            logger.info("Best %s so far: %.4f at iteration %d (model_best)", self.metric, score, hook.evaluated_at + 1)
            self.best = score


def best_score_on_disk(checkpointer: Checkpointer, metric: str) -> Optional[float]:
    """The score `model_best` of an earlier part of this run holds (None without one, for another metric, or for
    one that is not a finite number)."""
    path = os.path.join(checkpointer.save_dir, f"model_best{checkpointer.suffix}")
    if not os.path.lexists(path):
        return None
    try:
        if os.path.islink(path):
            raise CheckpointError("it is a symbolic link, which is not followed")
        best = read_checkpoint_metadata(path).get("best", {})
    except CheckpointError as e:
        logger.warning("Cannot read the score of %s (%s); the next evaluation replaces it", path, e)
        return None
    score = best.get(metric) if isinstance(best, dict) else None
    return float(score) if isinstance(score, (int, float)) and math.isfinite(score) else None


class EMAHook(HookBase):
    """Updates a weight EMA after every `period`-th optimizer update that was taken (not after skipped ones), on the
    device: which updates count is decided from each update's verdict without reading it on the host."""

    def __init__(self, ema: WeightEMA, period: int = 1) -> None:
        self.ema = ema
        self.period = period
        self._taken: Optional[torch.Tensor] = None  # updates taken so far, on the device

    def after_step(self) -> None:
        taken = 1.0 - self.trainer.last_outcome.skipped
        self._taken = taken if self._taken is None else self._taken + taken
        self.ema.update(taken if self.period == 1 else taken * (torch.remainder(self._taken, self.period) == 0))

    def state_dict(self) -> Dict[str, Any]:
        """The average with the count of updates towards the next one."""
        return {**self.ema.state_dict(), "taken": int(self._taken.item()) if self._taken is not None else 0}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the average and the count of `state_dict()`."""
        require_fields(state, {"taken": int}, "weight EMA")
        self.ema.load_state_dict(state)
        self._taken = torch.tensor(float(state["taken"]), device=self.ema.device)
