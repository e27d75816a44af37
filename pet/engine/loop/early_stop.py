"""Early stopping (TRAIN.EARLY_STOP): a run whose periodic evaluations stop improving ends there, as a run that
reached its last iteration ends: `model_final` saved, the final evaluation run, exit code 0."""
import logging
import math
from typing import Any, Dict, Optional

from pet.engine.loop.hooks import EvalHook, HookBase, lower_is_better
from pet.engine.persistence.checkpointer import Checkpointer
from pet.errors import ConfigError
from pet.state_fields import require_fields

logger = logging.getLogger(__name__)

STATE_FIELDS = {"metric": str, "mode": str, "best": (float, int, type(None)), "best_iteration": int,
                "evaluations_without_improvement": int}


class EarlyStop(HookBase):
    """After every periodic evaluation, compares `metric` with the best so far: better by more than `min_delta`
    (highest or lowest by `mode`; empty: lowest for a loss, as TRAIN.BEST_MODE decides) resets the count of
    evaluations without improvement; anything else, a NaN or inf score included, adds one. When the count reaches
    `patience`, the iteration that evaluated becomes the run's last.

    Register it after `eval_hook` and before the `PeriodicCheckpointer`, which then sees the run's end and saves
    `model_final` (with this hook's counts, a state of the checkpoint: a resumed run continues them)."""

    def __init__(self, eval_hook: EvalHook, metric: str, patience: int, min_delta: float = 0.0,
                 mode: str = "") -> None:
        self.eval_hook = eval_hook
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode or ("min" if lower_is_better(metric) else "max")
        self.best: Optional[float] = None
        self.best_iteration = -1
        self.without_improvement = 0

    def before_train(self) -> None:
        logger.info("TRAIN.EARLY_STOP: training stops after %d evaluations in a row without a %s %s (by more than "
                    "%g)", self.patience, "lower" if self.mode == "min" else "higher", self.metric, self.min_delta)
        if self.without_improvement >= self.patience:  # resumed from where this run stopped early
            logger.info("TRAIN.EARLY_STOP: the checkpoint's run stopped early (%d evaluations without improvement, "
                        "PATIENCE %d): nothing left to train", self.without_improvement, self.patience)
            self.trainer.end_at_this_iteration()

    def after_step(self) -> None:
        # The evaluation of the run's last iteration runs in after_train: nothing is left to stop then.
        if self.eval_hook.evaluated_at != self.trainer.iter:
            return
        if self.improved(self.score()):
            return
        best = f"best {self.best:.4f} at iteration {self.best_iteration}" if self.best is not None else "no score yet"
        if self.without_improvement < self.patience:
            logger.info("TRAIN.EARLY_STOP: %d of %d evaluations without improvement of %s (%s)",
                        self.without_improvement, self.patience, self.metric, best)
            return
        logger.info("Stopping early at iteration %d: %s has not improved by more than %g (%s) for %d evaluations "
                    "(TRAIN.EARLY_STOP.PATIENCE = %d); saving model_final, whose final evaluation is this one",
                    self.trainer.iter, self.metric, self.min_delta, best, self.without_improvement, self.patience)
        self.trainer.end_at_this_iteration()

    def score(self) -> float:
        """This evaluation's `metric`; a name it does not have is a `ConfigError` (a typo would otherwise stop
        the run for never improving, or never stop it)."""
        results = self.eval_hook.results
        if self.metric not in results:
            raise ConfigError(f"TRAIN.EARLY_STOP.METRIC = {self.metric!r} (or TRAIN.BEST_METRIC, when it is empty) is "
                              f"not among the evaluation's results; allowed: {' | '.join(results)}")
        return float(results[self.metric])

    def improved(self, score: float) -> bool:
        """Count `score`: True (and the new best) when it beats the best by more than `min_delta`."""
        sign = -1.0 if self.mode == "min" else 1.0
        if math.isfinite(score) and (self.best is None or sign * (score - self.best) > self.min_delta):
            self.best, self.best_iteration, self.without_improvement = score, self.trainer.iter, 0
            return True
        self.without_improvement += 1
        return False

    def state_dict(self) -> Dict[str, Any]:
        """The best score, where it was reached, and the evaluations since, with the metric and mode they are of."""
        return {"metric": self.metric, "mode": self.mode, "best": self.best, "best_iteration": self.best_iteration,
                "evaluations_without_improvement": self.without_improvement}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the counts of `state_dict()`; counts of another metric or mode are left behind (logged)."""
        require_fields(state, STATE_FIELDS, "early stopping")
        if (state["metric"], state["mode"]) != (self.metric, self.mode):
            logger.info("TRAIN.EARLY_STOP: the checkpoint counted %s (%s), this run counts %s (%s): counting anew",
                        state["metric"], state["mode"], self.metric, self.mode)
            return
        if state["evaluations_without_improvement"] < 0 or state["best_iteration"] < -1:
            raise ValueError("the early stopping state's counts are not counts")
        self.best = None if state["best"] is None else float(state["best"])
        self.best_iteration = state["best_iteration"]
        self.without_improvement = state["evaluations_without_improvement"]

    def resume(self, checkpoint: Dict[str, Any], path: Optional[str]) -> None:
        """Continue the counts a checkpoint holds; one written without early stopping starts them anew."""
        if "early_stop" in checkpoint:
            Checkpointer.load_into("early_stop", self, checkpoint, path)
        elif checkpoint:
            logger.info("TRAIN.EARLY_STOP: %s holds no early stopping counts; counting from this run's first "
                        "evaluation", path)


def early_stopping(cfg: Any, eval_hook: EvalHook) -> Optional[EarlyStop]:
    """The run's `EarlyStop` (None when TRAIN.EARLY_STOP.PATIENCE is 0). An empty METRIC is TRAIN.BEST_METRIC;
    an empty MODE is TRAIN.BEST_MODE for that metric, else decided from the metric's name."""
    train, node = cfg.TRAIN, cfg.TRAIN.EARLY_STOP
    if node.PATIENCE == 0:
        return None
    metric = node.METRIC or train.BEST_METRIC
    mode = node.MODE or (train.BEST_MODE if metric == train.BEST_METRIC else "")
    return EarlyStop(eval_hook, metric, node.PATIENCE, node.MIN_DELTA, mode)
