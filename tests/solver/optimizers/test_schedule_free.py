"""Schedule-free optimizers (schedulefree's classes): the train / eval switch the trainer drives, checked against
the optimizer switched by hand on a twin model, and the refusal of a decaying lr policy."""
import copy

import pytest
import torch
from torch import nn

from pet.config import ConfigError, get_cfg
from pet.solver import LearningRateScheduler, Optimizer
from pet.solver.optimizers.schedule_free import evaluation_mode, is_schedule_free, training_mode

schedulefree = pytest.importorskip("schedulefree")


def trained_pair(steps=3):
    """A model trained a few steps by a configured AdamWScheduleFree, and a deep copy of both (the twin)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", "schedulefree.AdamWScheduleFree", "SOLVER.OPTIMIZER.BASE_LR", 0.05])
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    training_mode([optimizer])
    for seed in range(steps):
        generator = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
    twin_model, twin = copy.deepcopy((model, optimizer))  # one copy: the twin optimizer holds the twin's parameters
    return model, optimizer, twin_model, twin


def test_only_classes_with_a_train_eval_switch_count_as_schedule_free():
    model = nn.Linear(2, 2)
    assert is_schedule_free(schedulefree.AdamWScheduleFree(model.parameters()))
    assert not is_schedule_free(torch.optim.AdamW(model.parameters()))


def test_evaluation_mode_holds_the_averaged_weights_and_gives_the_training_weights_back():
    model, optimizer, twin_model, twin = trained_pair()
    training = [p.detach().clone() for p in model.parameters()]
    twin.eval()  # by hand: the averaged weights x
    with evaluation_mode([optimizer, torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)]):
        for p, q in zip(model.parameters(), twin_model.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
        assert not any(torch.equal(p, t) for p, t in zip(model.parameters(), training))  # it did switch
    for p, t in zip(model.parameters(), training):
        torch.testing.assert_close(p, t)  # back to y (one lerp there and back: rounding-level)
    assert optimizer.param_groups[0]["train_mode"]


def test_evaluation_mode_gives_the_training_weights_back_after_an_error():
    model, optimizer, _, _ = trained_pair()
    with pytest.raises(RuntimeError), evaluation_mode([optimizer]):
        raise RuntimeError("evaluation failed")
    assert optimizer.param_groups[0]["train_mode"]


@pytest.mark.parametrize("policy", ["STEP", "COSINE", "POLY"])
def test_a_decaying_policy_is_refused_for_a_schedule_free_optimizer(policy):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", "schedulefree.SGDScheduleFree", "SOLVER.SCHEDULER.POLICY", policy,
                         "SOLVER.SCHEDULER.STEPS", (10,), "SOLVER.SCHEDULER.TOTAL_ITERS", 20])
    optimizer = Optimizer(nn.Linear(2, 2), cfg.SOLVER.OPTIMIZER).build()
    with pytest.raises(ConfigError, match=rf"SOLVER\.SCHEDULER\.POLICY = '{policy}': SGDScheduleFree is "
                                          r"schedule-free and needs no decay; use POLICY CONSTANT"):
        LearningRateScheduler(optimizer, cfg.SOLVER)


def test_constant_with_a_warmup_drives_a_schedule_free_optimizer():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", "schedulefree.SGDScheduleFree", "SOLVER.OPTIMIZER.BASE_LR", 0.5,
                         "SOLVER.SCHEDULER.POLICY", "CONSTANT", "SOLVER.SCHEDULER.WARM_UP_ITERS", 4,
                         "SOLVER.SCHEDULER.WARM_UP_FACTOR", 0.2])
    model = nn.Linear(2, 2)
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    scheduler = LearningRateScheduler(optimizer, cfg.SOLVER)
    training_mode([optimizer])
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
        scheduler.step()
    # LINEAR warmup 0.2 (1 - k/4) + k/4 of 0.5, then 0.5.
    assert lrs == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.5], rel=1e-12)
