"""Early stopping: the evaluation it stops at for score sequences worked out by hand (NaN counts as no
improvement), the trainer ending where it says, and whole runs that stop, resume with their count, and refuse
PATIENCE without EVAL_PERIOD in one line."""
import itertools
import json
import math
import shutil

import pytest
import torch

from pet.config import ConfigError
from pet.engine.loop.early_stop import EarlyStop
from pet.engine.loop.hooks import EvalHook, HookBase
from tests.engine.loop.test_trainer import StopAt, make_trainer, mlp


def train_with_scores(scores, patience, min_delta=0.0, mode="", metric="val/score", result=None, max_iter=40):
    """Train with an evaluation every iteration whose `result` (default: `metric`) is the next of `scores` (then
    0.0); the iterations trained and the iteration of each evaluation (a run that trains to its end evaluates its
    last one in after_train)."""
    sequence = itertools.chain(scores, itertools.repeat(0.0))
    seen = []

    def evaluate():
        seen.append(trainer.iter)
        return {result or metric: next(sequence)}

    eval_hook = EvalHook(1, evaluate)

    trainer = make_trainer(mlp())
    trainer.register_hooks([eval_hook, EarlyStop(eval_hook, metric, patience, min_delta, mode)])
    trainer.train(0, max_iter)
    return trainer.iter + 1, seen


@pytest.mark.parametrize("scores, patience, min_delta, mode, stopped_after", [
    ([0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.69, 0.7], 3, 0.0, "", 8),  # best 0.7 at the 5th; 3 without: the 8th
    ([0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.69, 0.7], 1, 0.0, "", 3),  # the first repeat ends it
    # against the best, not the previous score: +0.25 is not more than 0.25, +0.5 is; +0.125, then +0.25 are not
    ([1.0, 1.25, 1.5, 1.75, 1.875, 2.0, 2.125], 2, 0.25, "", 7),
    ([1.0, 0.9, 0.95, 0.8, 0.85, 0.86], 2, 0.0, "min", 6),  # lower is better
    ([1.0, 0.9, 0.95, 0.8, 0.85, 0.86], 2, 0.0, "max", 3),  # the same scores, higher is better
    ([0.5, math.nan, math.nan], 2, 0.0, "", 3),  # NaN is no improvement
    # a NaN first is no best; inf is no best either (0.2 then improves: 3 more without, not 2)
    ([math.nan, 0.1, math.nan, math.inf, 0.2, 0.2, 0.2, 0.2], 3, 0.0, "", 8),
])
def test_the_evaluation_it_stops_at(scores, patience, min_delta, mode, stopped_after):
    trained, seen = train_with_scores(scores, patience, min_delta, mode)
    assert trained == stopped_after
    # one evaluation per iteration: the one early stopping stopped at is the final one, not run twice
    assert seen == list(range(stopped_after))


@pytest.mark.parametrize("metric, stopped_after", [("val/loss_cls", 6), ("val/accuracy", 3)])
def test_without_a_mode_a_loss_is_better_low_and_the_rest_high(metric, stopped_after):
    trained, _ = train_with_scores([1.0, 0.9, 0.95, 0.8, 0.85, 0.86], 2, metric=metric)
    assert trained == stopped_after


def test_a_run_that_keeps_improving_trains_to_its_end():
    trained, seen = train_with_scores([0.1 * k for k in range(12)], 2, max_iter=12)
    assert trained == 12 and seen == list(range(12))  # the last in after_train


def test_a_stop_signal_when_early_stopping_ends_the_run_is_a_normal_end():
    eval_hook = EvalHook(1, lambda: {"val/score": 1.0})
    trainer = make_trainer(mlp())
    trainer.register_hooks([eval_hook, EarlyStop(eval_hook, "val/score", 2)])
    trainer.stop_signals = StopAt(trainer, at=2)  # a SIGTERM with the update that early stopping ends the run at
    trainer.train(0, 10)
    assert trainer.iter == 2 and trainer.failure is None  # model_final was saved: no Preempted to resume from


def test_a_run_ended_before_its_first_iteration_trains_nothing():
    class EndsAtOnce(HookBase):
        def before_train(self):
            self.trainer.end_at_this_iteration()

    trainer = make_trainer(mlp())
    before = [p.clone() for p in trainer.model.parameters()]
    trainer.register_hooks([EndsAtOnce()])
    trainer.train(4, 10)
    assert trainer.iter == 3 and trainer.max_iter == 4
    assert all(torch.equal(p, q) for p, q in zip(before, trainer.model.parameters()))


def test_a_metric_the_evaluation_does_not_have_is_a_config_error():
    with pytest.raises(ConfigError, match=r"TRAIN.EARLY_STOP.METRIC = 'val/acc' .* allowed: val/score"):
        train_with_scores([0.5], 2, metric="val/acc", result="val/score")


def test_counts_of_another_metric_are_left_behind():
    hook = EarlyStop(EvalHook(1, dict), "val/accuracy", 3)
    hook.load_state_dict({"metric": "val/loss", "mode": "min", "best": 0.1, "best_iteration": 4,
                          "evaluations_without_improvement": 2})
    assert (hook.best, hook.without_improvement) == (None, 0)
    with pytest.raises(ValueError, match="evaluations_without_improvement"):
        hook.load_state_dict({"metric": "val/accuracy", "mode": "max", "best": 0.1, "best_iteration": 4})


# Whole runs: 8 updates of tests.user_builders, an evaluation every iteration; MIN_DELTA 1000 makes every
# evaluation after the first one no improvement, so with PATIENCE 3 the run stops at iteration 3 (4 updates).
STOPS_AT_3 = ["TRAIN.EVAL_PERIOD", "1", "TRAIN.CHECKPOINT_PERIOD", "2", "TRAIN.EARLY_STOP.PATIENCE", "3",
              "TRAIN.EARLY_STOP.METRIC", "val/accuracy", "TRAIN.EARLY_STOP.MIN_DELTA", "1000"]


def final_checkpoint(folder):
    from pet.engine.persistence.checkpointer import read_checkpoint

    return read_checkpoint(str(folder / "model_final.pth"))


def test_a_run_stops_early_with_its_final_checkpoint_and_evaluation(tmp_path, capsys):
    from tests.engine.runs.test_runner import train_in_process

    assert train_in_process(tmp_path, *STOPS_AT_3) == 0  # the run's log goes to stdout
    final = final_checkpoint(tmp_path)
    assert final["iteration"] == 4
    assert final["early_stop"]["evaluations_without_improvement"] == 3
    assert final["early_stop"]["best_iteration"] == 0
    rows = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    assert max(row["iteration"] for row in rows) == 3 and "val/accuracy" in rows[-1]
    log = capsys.readouterr().out.splitlines()
    assert sum("Evaluation at iteration 3:" in line for line in log) == 1  # the stopping one is the final one
    (line,) = [line.split("] ", 1)[1] for line in log if "Stopping early" in line]
    assert line.startswith("Stopping early at iteration 3: val/accuracy has not improved by more than 1000 (best ")
    assert "at iteration 0) for 3 evaluations (TRAIN.EARLY_STOP.PATIENCE = 3)" in line


def test_a_resumed_run_keeps_its_count_and_stops_where_the_whole_one_did(tmp_path):
    from tests.engine.runs.test_runner import train_in_process

    assert train_in_process(tmp_path / "whole", *STOPS_AT_3) == 0
    shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
    (tmp_path / "resumed" / "model_final.pth").unlink()  # back to the checkpoint after iteration 1: 1 without
    (tmp_path / "resumed" / "last_checkpoint").write_text("model_0000002.pth\n")
    assert train_in_process(tmp_path / "resumed", "--resume", *STOPS_AT_3) == 0
    whole, resumed = final_checkpoint(tmp_path / "whole"), final_checkpoint(tmp_path / "resumed")
    assert resumed["iteration"] == whole["iteration"] == 4  # counting anew, it would have run to iteration 5
    assert resumed["early_stop"] == whole["early_stop"]
    for name, tensor in whole["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name


def test_resuming_a_run_that_stopped_early_trains_nothing_more(tmp_path, capsys):
    from tests.engine.runs.test_runner import train_in_process

    assert train_in_process(tmp_path, *STOPS_AT_3) == 0
    before = final_checkpoint(tmp_path)
    capsys.readouterr()
    assert train_in_process(tmp_path, "--resume", *STOPS_AT_3) == 0
    out = capsys.readouterr().out
    assert "nothing left to train" in out and "Trained" not in out
    after = final_checkpoint(tmp_path)
    assert after["iteration"] == 4
    for name, tensor in before["model"].items():
        assert torch.equal(after["model"][name], tensor), name


def test_patience_without_periodic_evaluations_is_one_error_line(tmp_path, capsys):
    from tests.engine.runs.test_runner import train_in_process

    assert train_in_process(tmp_path / "run", "TRAIN.EVAL_PERIOD", "0", "TRAIN.EARLY_STOP.PATIENCE", "3",
                            "TRAIN.BEST_METRIC", "val/accuracy") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: TRAIN.EARLY_STOP.PATIENCE = 3 needs TRAIN.EVAL_PERIOD > 0 (got 0): early stopping counts "
                   "periodic evaluations; set EVAL_PERIOD, or PATIENCE 0 (off)"]
    assert not (tmp_path / "run").exists()  # refused before the output folder was touched
