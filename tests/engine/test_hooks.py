"""Hooks: the LR hook records then steps; checkpoint, evaluation and writer periods."""
from types import SimpleNamespace

import pytest

from pet.engine.events import EventStorage
from pet.engine.hooks import EvalHook, LRSchedulerHook, PeriodicCheckpointer, PeriodicWriter


def fake_trainer(max_iter):
    return SimpleNamespace(iter=0, max_iter=max_iter, storage=EventStorage())


def run(hook, max_iter):
    hook.trainer = fake_trainer(max_iter)
    hook.before_train()
    for it in range(max_iter):
        hook.trainer.iter = hook.trainer.storage.iter = it
        hook.after_step()


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
    checkpointer = SimpleNamespace(save=lambda name, iteration: saved.append((name, iteration)))
    run(PeriodicCheckpointer(checkpointer, period=4), 10)
    assert saved == [("model_0000004", 4), ("model_0000008", 8), ("model_final", 10)]


def test_evaluates_every_period_and_at_the_end():
    calls = []
    hook = EvalHook(3, lambda: calls.append(1) or {"val/accuracy": 50.0})
    run(hook, 7)
    assert len(calls) == 3  # after iterations 3, 6 and 7
    assert hook.trainer.storage.latest()["val/accuracy"] == (50.0, 6)


def test_eval_period_zero_evaluates_only_at_the_end():
    calls = []
    run(EvalHook(0, lambda: calls.append(1) or {}), 5)
    assert len(calls) == 1


def test_writers_write_every_period_and_at_the_end():
    written = []
    writer = SimpleNamespace(write=lambda storage: written.append(storage.iter), close=lambda: None)
    run(PeriodicWriter([writer], period=4), 10)
    assert written == [3, 7, 9]
