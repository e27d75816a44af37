"""`get_cfg()` and the SOLVER defaults that the README documents."""
import pytest
from torch import nn

from pet.config import get_cfg, validate_cfg
from pet.solver import LearningRateScheduler, Optimizer

# The README's SOLVER table, copied key by key.
DOCUMENTED_DEFAULTS = {
    "OPTIMIZER.TYPE": "SGD", "OPTIMIZER.BASE_LR": 0.001, "OPTIMIZER.MOMENTUM": 0.9, "OPTIMIZER.NESTEROV": False,
    "OPTIMIZER.BETAS": (0.9, 0.999), "OPTIMIZER.EPS": 1e-8, "OPTIMIZER.WEIGHT_DECAY": 1e-4,
    "OPTIMIZER.WEIGHT_DECAY_BIAS": 0.0, "OPTIMIZER.WEIGHT_DECAY_NORM": 0.0, "OPTIMIZER.WEIGHT_DECAY_EMBED": 0.0,
    "OPTIMIZER.BIAS_LR_FACTOR": 1.0, "OPTIMIZER.BACKBONE_LR_FACTOR": 1.0, "OPTIMIZER.BACKBONE_PREFIX": "backbone",
    "OPTIMIZER.CLIP_GRADIENTS.ENABLED": False, "OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE": "full_model",
    "OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE": 1.0, "OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE": 2.0,
    "SCHEDULER.POLICY": "STEP", "SCHEDULER.TOTAL_ITERS": 40000, "SCHEDULER.TOTAL_EPOCHS": None,
    "SCHEDULER.STEPS": (30000,), "SCHEDULER.GAMMA": 0.1, "SCHEDULER.WARM_UP_ITERS": 500,
    "SCHEDULER.WARM_UP_EPOCHS": None, "SCHEDULER.WARM_UP_FACTOR": 0.1, "SCHEDULER.WARM_UP_METHOD": "LINEAR",
    "SCHEDULER.LR_POW": 0.9, "SCHEDULER.MIN_LR_FACTOR": 0.0, "SCHEDULER.LOG_LR_CHANGE_THRESHOLD": 1.1,
}


def lookup(node, dotted):
    for part in dotted.split("."):
        node = node[part]
    return node


def test_every_spec_default():
    solver = get_cfg().SOLVER
    for key, value in DOCUMENTED_DEFAULTS.items():
        got = lookup(solver, key)
        assert got == value and type(got) is type(value), key


def test_keys_beyond_the_spec_live_in_their_own_sub_nodes():
    solver = get_cfg().SOLVER
    leaves = {f"OPTIMIZER.{k}" for k, v in solver.OPTIMIZER.items() if not isinstance(v, dict)}
    leaves |= {f"SCHEDULER.{k}" for k, v in solver.SCHEDULER.items() if not isinstance(v, dict)}
    assert leaves == {k for k in DOCUMENTED_DEFAULTS if k.count(".") == 1}
    assert {k for k, v in solver.OPTIMIZER.items() if isinstance(v, dict)} == {
        "CLIP_GRADIENTS", "NONFINITE", "LARS", "MUON", "KERNELS", "OVERRIDES", "LAYER_DECAY", "KWARGS"}
    assert {k for k, v in solver.SCHEDULER.items() if isinstance(v, dict)} == {
        "ONE_CYCLE", "NOAM", "CHAIN", "MOMENTUM", "WEIGHT_DECAY"}
    assert set(solver.OPTIMIZER.LARS) == {"TRUST_COEFFICIENT", "EXCLUDE_NORM_AND_BIAS"}


def test_get_cfg_returns_a_fresh_clone():
    first = get_cfg()
    first.SOLVER.OPTIMIZER.BASE_LR = 5.0
    first.SOLVER.SCHEDULER.STEPS = (1, 2)
    second = get_cfg()
    assert second.SOLVER.OPTIMIZER.BASE_LR == 0.001 and second.SOLVER.SCHEDULER.STEPS == (30000,)
    assert first.OUTPUT_DIR == second.OUTPUT_DIR == "output"


def test_the_defaults_are_valid_and_build_a_solver():
    cfg = get_cfg()
    validate_cfg(cfg)
    optimizer = Optimizer(nn.Linear(3, 2), cfg.SOLVER.OPTIMIZER).build()
    LearningRateScheduler(optimizer, cfg.SOLVER)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.001 * 0.1] * 2)  # warmup starts at 0.1
