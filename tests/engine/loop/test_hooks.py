"""Hooks: the LR hook records then steps; checkpoint, evaluation and writer periods."""
from types import SimpleNamespace

import pytest

from pet.engine.loop.events import EventStorage
from pet.engine.loop.hooks import EvalHook, LRSchedulerHook, PeriodicCheckpointer, PeriodicWriter


def fake_trainer(max_iter):
    return SimpleNamespace(iter=0, max_iter=max_iter, storage=EventStorage(), failure=None)


def run(hook, max_iter, *more_hooks):
    """The hooks' life in a run of `max_iter` iterations, in registration order, as the trainer calls them."""
    hooks = [hook, *more_hooks]
    trainer = fake_trainer(max_iter)
    for each in hooks:
        each.trainer = trainer
        each.before_train()
    for it in range(max_iter):
        trainer.iter = trainer.storage.iter = it
        trainer.storage.put_scalar("loss", 1.0)  # what the step records
        for each in hooks:
            each.after_step()
    for each in hooks:
        each.after_train()


def test_lr_hook_records_the_lr_the_step_ran_at_then_steps():
    groups = [{"name": "weight", "lr": 0.1}, {"name": "bias", "lr": 0.2}]
    stepped = []

    def step():
        stepped.append([g["lr"] for g in groups])
        for g in groups:
            g["lr"] /= 10

    unit = SimpleNamespace(name="", optimizer=SimpleNamespace(param_groups=groups), scheduler=SimpleNamespace(step=step),
                           group_labels=lambda: ["weight", "bias"])
    hook = LRSchedulerHook([unit])
    run(hook, 1)
    latest = hook.trainer.storage.latest()
    assert (latest["lr"][0], latest["lr/weight"][0], latest["lr/bias"][0]) == (0.1, 0.1, 0.2)
    assert stepped == [[0.1, 0.2]] and groups[0]["lr"] == pytest.approx(0.01)


def test_checkpoints_every_period_and_at_the_end():
    saved = []
    checkpointer = SimpleNamespace(save=lambda name, iteration, wait: saved.append((name, iteration, wait)),
                                   wait=lambda: saved.append("waited"))
    run(PeriodicCheckpointer(checkpointer, period=4), 10)
    # periodic ones may go to the background; the final one is written at once, after any write in flight
    assert saved == [("model_0000004", 4, False), ("model_0000008", 8, False), ("model_final", 10, True), "waited"]


def test_evaluates_every_period_and_at_the_end():
    calls = []
    hook = EvalHook(3, lambda: calls.append(1) or {"val/accuracy": 50.0})
    run(hook, 7)
    assert len(calls) == 3  # after iterations 3, 6 and 7
    assert hook.trainer.storage.latest()["val/accuracy"] == (50.0, 6)  # recorded at the last iteration, index 6


def test_eval_period_zero_evaluates_only_at_the_end():
    calls = []
    run(EvalHook(0, lambda: calls.append(1) or {}), 5)
    assert len(calls) == 1


def test_writers_write_every_period_and_at_the_end():
    written = []
    writer = SimpleNamespace(write=lambda storage: written.append(storage.iter), close=lambda: None)
    run(PeriodicWriter([writer], period=4), 10)
    assert written == [3, 7, 9]


def test_the_final_evaluation_comes_after_the_final_checkpoint():
    saved = []

    def failing_evaluation():
        assert saved, "evaluated before model_final was saved"
        raise RuntimeError("evaluation failed")

    checkpointer = PeriodicCheckpointer(SimpleNamespace(save=lambda name, it, wait: saved.append(name),
                                                        wait=lambda: None), period=100)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        run(EvalHook(0, failing_evaluation), 3, checkpointer)
    assert saved == ["model_final"]


def test_the_writer_writes_the_final_evaluation_with_the_last_iteration_once():
    written = []
    writer = SimpleNamespace(write=lambda storage: written.append((storage.iter, dict(storage.latest()))),
                             close=lambda: None)
    run(EvalHook(0, lambda: {"val/accuracy": 90.0}), 4, PeriodicWriter([writer], period=2))
    assert [it for it, _ in written] == [1, 3]  # the period, then the end (not twice at the end)
    assert written[-1][1]["val/accuracy"] == (90.0, 3)


@pytest.mark.parametrize("metric, pick", [("val/accuracy", max), ("val/loss", min)])
def test_model_best_holds_the_best_evaluation_by_the_chosen_metric(tmp_path, metric, pick):
    import json

    from pet.engine.persistence.checkpointer import read_checkpoint
    from tests.engine.test_user_builders import USER
    from tests.tools.test_cli_errors import DEFAULT_CFG, train_net

    code = train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(tmp_path), *USER,
                                          "SOLVER.SCHEDULER.TOTAL_ITERS", "24", "SOLVER.SCHEDULER.STEPS", "(20,)",
                                          "SOLVER.SCHEDULER.WARM_UP_ITERS", "0", "SOLVER.OPTIMIZER.BASE_LR", "0.5",
                                          "TRAIN.BATCH_SIZE", "8", "TRAIN.EVAL_PERIOD", "4",
                                          "TRAIN.BEST_METRIC", metric])
    assert code == 0
    rows = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    scores = [(row[metric], row["iteration"] + 1) for row in rows if metric in row]
    assert len(scores) == 6
    best = read_checkpoint(str(tmp_path / "model_best.pth"))
    score = pick(value for value, _ in scores)
    first_at = next(at for value, at in scores if value == score)  # a tie keeps the earlier checkpoint
    assert best["best"] == {metric: score} and best["iteration"] == first_at
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth\n"  # the newest, not the best


def test_a_resumed_run_compares_with_the_best_score_on_disk(tmp_path):
    import torch

    from pet.engine.persistence.checkpointer import Checkpointer
    from pet.engine.loop.hooks import BestCheckpointer

    checkpointer = Checkpointer(str(tmp_path), model=torch.nn.Linear(1, 1))
    assert BestCheckpointer(checkpointer, "val/accuracy", EvalHook(0, dict)).best is None  # a fresh run
    checkpointer.save("model_best", 40, mark=False, extra={"best": {"val/accuracy": 91.5}})
    assert not (tmp_path / "last_checkpoint").exists()  # the best is never what a resume starts from
    assert BestCheckpointer(checkpointer, "val/accuracy", EvalHook(0, dict)).best == 91.5
    assert BestCheckpointer(checkpointer, "val/loss", EvalHook(0, dict)).best is None  # another metric


def best_after(tmp_path, metric, scores, mode=""):
    """The score model_best holds after evaluations giving `scores`, one per iteration."""
    import torch

    from pet.engine.persistence.checkpointer import Checkpointer, read_checkpoint
    from pet.engine.loop.hooks import BestCheckpointer

    results = iter(scores)
    eval_hook = EvalHook(1, lambda: {metric: next(results)})
    checkpointer = Checkpointer(str(tmp_path), model=torch.nn.Linear(1, 1))
    run(eval_hook, len(scores), BestCheckpointer(checkpointer, metric, eval_hook, mode))
    path = tmp_path / "model_best.pth"
    return read_checkpoint(str(path))["best"][metric] if path.exists() else None


@pytest.mark.parametrize("scores, best", [([float("nan"), 50.0, 70.0, 60.0], 70.0),
                                          ([float("inf"), 50.0, float("nan")], 50.0),
                                          ([float("nan"), float("nan")], None)])
def test_a_score_that_is_not_finite_is_never_the_best(tmp_path, scores, best):
    assert best_after(tmp_path, "val/accuracy", scores) == best


@pytest.mark.parametrize("metric, mode, best", [
    ("val/AP-blossom", "", 60.0), ("val/AP-gloss", "", 60.0), ("val/loss", "", 10.0), ("val/loss_cls", "", 10.0),
    ("val/bbox_loss", "", 10.0), ("val/accuracy", "min", 10.0), ("val/loss", "max", 60.0)])
def test_which_end_is_best_comes_from_best_mode_or_from_a_loss_name(tmp_path, metric, mode, best):
    assert best_after(tmp_path, metric, [20.0, 60.0, 10.0, 40.0], mode) == best


def test_a_non_finite_best_on_disk_does_not_pin_model_best(tmp_path):
    import torch

    from pet.engine.persistence.checkpointer import Checkpointer
    from pet.engine.loop.hooks import BestCheckpointer

    checkpointer = Checkpointer(str(tmp_path), model=torch.nn.Linear(1, 1))
    checkpointer.save("model_best", 4, mark=False, extra={"best": {"val/accuracy": float("nan")}})
    assert BestCheckpointer(checkpointer, "val/accuracy", EvalHook(0, dict)).best is None
