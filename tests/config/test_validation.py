"""Every invalid value of a SOLVER key is a `ConfigError` naming the full key and the allowed values."""
import math
import re

import pytest
import torch
from torch import nn

from pet.config import ConfigError, get_cfg, validate_solver_cfg
from pet.solver import LearningRateScheduler, Optimizer

# (key under SOLVER, invalid value, a fragment of the allowed values the message must show)
INVALID = [
    ("OPTIMIZER.TYPE", 3, "a string"),
    ("OPTIMIZER.BASE_LR", 0.0, "> 0"),
    ("OPTIMIZER.BASE_LR", -0.1, "> 0"),
    ("OPTIMIZER.BASE_LR", math.inf, "> 0"),
    ("OPTIMIZER.BASE_LR", math.nan, "> 0"),
    ("OPTIMIZER.BASE_LR", "0.1", "> 0"),
    ("OPTIMIZER.MOMENTUM", -0.1, "[0, 1)"),
    ("OPTIMIZER.MOMENTUM", 1.0, "[0, 1)"),
    ("OPTIMIZER.NESTEROV", 1, "True or False"),
    ("OPTIMIZER.BETAS", (0.9,), "two numbers in [0, 1)"),
    ("OPTIMIZER.BETAS", (0.9, 1.0), "two numbers in [0, 1)"),
    ("OPTIMIZER.BETAS", (-0.1, 0.9), "two numbers in [0, 1)"),
    ("OPTIMIZER.EPS", 0.0, "> 0"),
    ("OPTIMIZER.WEIGHT_DECAY", -1e-4, ">= 0"),
    ("OPTIMIZER.WEIGHT_DECAY_BIAS", -1.0, ">= 0"),
    ("OPTIMIZER.WEIGHT_DECAY_NORM", -1.0, ">= 0"),
    ("OPTIMIZER.WEIGHT_DECAY_EMBED", -1.0, ">= 0"),
    ("OPTIMIZER.BIAS_LR_FACTOR", -2.0, ">= 0"),
    ("OPTIMIZER.BACKBONE_LR_FACTOR", -0.5, ">= 0"),
    ("OPTIMIZER.BACKBONE_PREFIX", "", "non-empty module name"),
    ("OPTIMIZER.BACKBONE_PREFIX", "backbone.", "without leading or trailing dots"),
    ("OPTIMIZER.CLIP_GRADIENTS.ENABLED", "yes", "True or False"),
    ("OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE", "global", "full_model | norm | value"),
    ("OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 0.0, "> 0"),
    ("OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE", 0.0, "> 0, or inf"),
    ("OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE", -math.inf, "> 0, or inf"),
    ("OPTIMIZER.LARS.TRUST_COEFFICIENT", 0.0, "> 0"),
    ("OPTIMIZER.LARS.EXCLUDE_NORM_AND_BIAS", None, "True or False"),
    ("SCHEDULER.POLICY", "CYCLIC", "STEP | COSINE | STEP_COSINE | POLY"),
    ("SCHEDULER.TOTAL_ITERS", 0, "integer > 0"),
    ("SCHEDULER.TOTAL_ITERS", 100.0, "integer > 0"),
    ("SCHEDULER.TOTAL_EPOCHS", 0, "None or an integer > 0"),
    ("SCHEDULER.STEPS", (), "non-empty, strictly increasing"),
    ("SCHEDULER.STEPS", (200, 100), "strictly increasing"),
    ("SCHEDULER.STEPS", (100, 100), "strictly increasing"),
    ("SCHEDULER.STEPS", (0, 100), "numbers > 0"),
    ("SCHEDULER.STEPS", (30000, 40000), "each step in (0, SOLVER.SCHEDULER.TOTAL_ITERS = 40000)"),
    ("SCHEDULER.GAMMA", 0.0, "(0, 1]"),
    ("SCHEDULER.GAMMA", 1.5, "(0, 1]"),
    ("SCHEDULER.WARM_UP_ITERS", -1, "integer >= 0"),
    ("SCHEDULER.WARM_UP_EPOCHS", -1.0, "None or a number >= 0"),
    ("SCHEDULER.WARM_UP_FACTOR", 0.0, "(0, 1]"),
    ("SCHEDULER.WARM_UP_FACTOR", 1.1, "(0, 1]"),
    ("SCHEDULER.WARM_UP_METHOD", "COSINE", "CONSTANT | LINEAR | EXP"),
    ("SCHEDULER.LR_POW", 0.0, "> 0"),
    ("SCHEDULER.MIN_LR_FACTOR", 1.0, "[0, 1)"),
    ("SCHEDULER.MIN_LR_FACTOR", -0.1, "[0, 1)"),
    ("SCHEDULER.LOG_LR_CHANGE_THRESHOLD", 0.5, ">= 1"),
]


def set_key(cfg, dotted, value):
    *parents, leaf = dotted.split(".")
    node = cfg.SOLVER
    for part in parents:
        node = node[part]
    node[leaf] = value


def build_solver(cfg):
    model = nn.Linear(2, 2)
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    LearningRateScheduler(optimizer, cfg.SOLVER, iter_per_epoch=10)


@pytest.mark.parametrize("key, value, allowed", INVALID)
def test_invalid_value_is_a_config_error_naming_the_key(key, value, allowed):
    cfg = get_cfg()
    set_key(cfg, key, value)
    for check in (lambda c: validate_solver_cfg(c.SOLVER), build_solver):
        with pytest.raises(ConfigError) as error:
            check(cfg)
        message = str(error.value)
        assert f"SOLVER.{key}" in message and allowed in message, message
        assert "\n" not in message


def test_an_unknown_optimizer_name_is_refused_when_the_optimizer_is_built():
    cfg = get_cfg()
    set_key(cfg, "OPTIMIZER.TYPE", "SGDX")
    validate_solver_cfg(cfg.SOLVER)  # the classes are torch's: the config alone does not know them
    with pytest.raises(ConfigError, match=r"^SOLVER\.OPTIMIZER\.TYPE = 'SGDX' is invalid; allowed: .*ADAMW"):
        build_solver(cfg)


def test_steps_in_epochs_are_checked_against_total_epochs():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.SCHEDULER.TOTAL_EPOCHS", 12, "SOLVER.SCHEDULER.STEPS", (8, 12)])
    with pytest.raises(ConfigError, match=re.escape("SOLVER.SCHEDULER.STEPS = (8, 12) is invalid; allowed: each "
                                                    "step in (0, SOLVER.SCHEDULER.TOTAL_EPOCHS = 12)")):
        validate_solver_cfg(cfg.SOLVER)


def test_steps_beyond_the_run_are_allowed_when_the_policy_ignores_them():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.SCHEDULER.POLICY", "COSINE", "SOLVER.SCHEDULER.TOTAL_ITERS", 1000])
    validate_solver_cfg(cfg.SOLVER)  # STEPS (30000,) are unused by COSINE
    cfg.SOLVER.SCHEDULER.POLICY = "STEP_COSINE"
    with pytest.raises(ConfigError, match=r"SOLVER\.SCHEDULER\.STEPS"):
        validate_solver_cfg(cfg.SOLVER)


def test_nesterov_needs_momentum():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.NESTEROV", True, "SOLVER.OPTIMIZER.MOMENTUM", 0.0])
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZER\.NESTEROV = True needs SOLVER\.OPTIMIZER\.MOMENTUM > 0"):
        validate_solver_cfg(cfg.SOLVER)


def test_unknown_and_missing_keys_set_by_hand_are_caught():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER.LR = 0.1
    with pytest.raises(ConfigError, match=r"unknown config key SOLVER\.OPTIMIZER\.LR"):
        validate_solver_cfg(cfg.SOLVER)
    cfg = get_cfg()
    del cfg.SOLVER.SCHEDULER["GAMMA"]
    with pytest.raises(ConfigError, match=r"missing config key SOLVER\.SCHEDULER\.GAMMA"):
        validate_solver_cfg(cfg.SOLVER)


def lr_at(cfg, k):
    """The lr of the first group after k scheduler steps (the defaults: BASE_LR 0.001, 40000 updates, warmup 500
    from 0.1, STEPS (30000,))."""
    optimizer = Optimizer(nn.Linear(2, 2), cfg.SOLVER.OPTIMIZER).build()
    LearningRateScheduler(optimizer, cfg.SOLVER, start_iter=k)
    return optimizer.param_groups[0]["lr"]


def test_policy_and_warmup_names_are_case_insensitive():
    cfg = get_cfg()
    set_key(cfg, "SCHEDULER.POLICY", "cosine")
    assert lr_at(cfg, 20000) == pytest.approx(0.001 * 0.5 * (1 + math.cos(math.pi / 2)))  # halfway down the cosine
    cfg = get_cfg()
    set_key(cfg, "SCHEDULER.WARM_UP_METHOD", "exp")
    assert lr_at(cfg, 250) == pytest.approx(0.001 * 0.1 ** 0.5)  # halfway up an exponential warmup from 0.1


def test_clip_type_names_are_case_insensitive():
    cfg = get_cfg()
    set_key(cfg, "OPTIMIZER.CLIP_GRADIENTS.ENABLED", True)
    set_key(cfg, "OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE", "NORM")
    set_key(cfg, "OPTIMIZER.WEIGHT_DECAY", 0.0)
    model = nn.Linear(2, 2)
    before = model.weight.detach().clone()
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    model.weight.grad = torch.full((2, 2), 10.0)  # norm 20: clipped on its own to norm 1
    model.bias.grad = torch.full((2,), 0.5)  # norm 0.71: left as it is
    optimizer.step()
    torch.testing.assert_close(model.weight, before - 0.001 * 10.0 / (20.0 + 1e-6))
    assert torch.equal(model.bias.grad, torch.full((2,), 0.5))
