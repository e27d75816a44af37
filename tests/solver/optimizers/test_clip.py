"""Clipping: each type and norm type against torch's own clip functions, for SGD, AdamW and Adam."""
import copy
import math

import pytest
import torch
from torch.nn.utils import clip_grad_norm_, clip_grad_value_

from pet.config import get_cfg
from pet.solver import Optimizer
from tests.guard_of import guard_of
from tests.toy_model import fill_grads, toy_model

CLIP_VALUE = 0.7


def solver_cfg(opt_type, clip_type=None, norm_type=2.0, implementation="AUTO"):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", opt_type, "SOLVER.OPTIMIZER.BASE_LR", 0.05,
                         "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.5, "SOLVER.OPTIMIZER.WEIGHT_DECAY", 1e-3,
                         "SOLVER.OPTIMIZER.KERNELS.IMPLEMENTATION", implementation])
    if clip_type:
        cfg.merge_from_list(["SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE", clip_type,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", CLIP_VALUE,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE", norm_type])
    return cfg.SOLVER.OPTIMIZER


def torch_clip(params, clip_type, norm_type):
    """The reference: torch's own functions, per tensor in a Python loop for `norm`."""
    if clip_type == "full_model":
        clip_grad_norm_(params, CLIP_VALUE, norm_type=norm_type)
    elif clip_type == "norm":
        for p in params:
            clip_grad_norm_([p], CLIP_VALUE, norm_type=norm_type)
    else:
        clip_grad_value_(params, CLIP_VALUE)


CASES = [("full_model", 2.0), ("full_model", 1.0), ("full_model", math.inf), ("full_model", 3.0),
         ("norm", 2.0), ("norm", 1.0), ("norm", math.inf), ("value", 2.0)]


@pytest.mark.parametrize("implementation", ["AUTO", "FOR_LOOP"])  # fused kernels, and the host path
@pytest.mark.parametrize("opt_type", ["SGD", "ADAMW", "ADAM"])
@pytest.mark.parametrize("clip_type, norm_type", CASES)
def test_clipped_steps_match_torch_clipping_then_an_unclipped_step(opt_type, clip_type, norm_type, implementation):
    model = toy_model()
    reference = copy.deepcopy(model)
    clipped = Optimizer(model, solver_cfg(opt_type, clip_type, norm_type, implementation)).build()
    plain = Optimizer(reference, solver_cfg(opt_type)).build()
    for step in range(3):
        # Large gradients, so that every clip type actually clips.
        fill_grads(model, seed=step, scale=5.0)
        fill_grads(reference, seed=step, scale=5.0)
        torch_clip([p for p in reference.parameters() if p.requires_grad], clip_type, norm_type)
        clipped.step()
        plain.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, msg=name)


@pytest.mark.parametrize("clip_type, norm_type", CASES)
def test_gradients_after_the_hook_equal_torch_clipping(clip_type, norm_type):
    model = toy_model()
    optimizer = Optimizer(model, solver_cfg("SGD", clip_type, norm_type, "FOR_LOOP")).build()
    fill_grads(model, scale=3.0)
    params = [p for p in model.parameters() if p.requires_grad]
    unclipped = [p.grad.clone() for p in params]
    expected_params = [p.detach().clone().requires_grad_() for p in params]
    for p, g in zip(expected_params, unclipped):
        p.grad = g.clone()
    torch_clip(expected_params, clip_type, norm_type)
    guard_of(optimizer)(optimizer, (), {})
    for p, q in zip(params, expected_params):
        torch.testing.assert_close(p.grad, q.grad)
    assert any(not torch.equal(g, p.grad) for g, p in zip(unclipped, params))  # it did clip something


@pytest.mark.parametrize("opt_type", ["SGD", "ADAMW"])
def test_fused_full_model_clipping_leaves_the_clipped_gradients_like_torch(opt_type):
    model = toy_model()
    optimizer = Optimizer(model, solver_cfg(opt_type, "full_model")).build()
    assert all(group["fused"] for group in optimizer.param_groups)
    fill_grads(model, scale=3.0)
    params = [p for p in model.parameters() if p.requires_grad]
    expected = [p.detach().clone().requires_grad_() for p in params]
    for p, q in zip(expected, params):
        p.grad = q.grad.clone()
    torch_clip(expected, "full_model", 2.0)
    optimizer.step()
    for p, q in zip(params, expected):
        torch.testing.assert_close(p.grad, q.grad)
    assert not hasattr(optimizer, "grad_scale") and not hasattr(optimizer, "found_inf")


def test_fused_clipping_works_under_a_grad_scaler_that_did_not_unscale():
    model, reference = toy_model(), toy_model()
    optimizer = Optimizer(model, solver_cfg("ADAMW", "full_model")).build()
    plain = Optimizer(reference, solver_cfg("ADAMW", "full_model", implementation="FOR_LOOP")).build()
    fill_grads(reference, scale=3.0)
    fill_grads(model, scale=3.0 * 1024)  # as a GradScaler at scale 1024 leaves them
    optimizer.grad_scale = torch.tensor(1024.0)  # what GradScaler.step hands a fused optimizer
    optimizer.found_inf = torch.tensor(0.0)
    optimizer.step()
    plain.step()
    assert optimizer.grad_scale.item() == 1024.0  # the scaler's attributes are back for it to delete
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def test_clipping_is_a_step_pre_hook_not_a_new_class():
    optimizer = Optimizer(toy_model(), solver_cfg("ADAMW", "full_model")).build()
    assert type(optimizer) is torch.optim.AdamW
    assert guard_of(optimizer) in optimizer._optimizer_step_pre_hooks.values()


@pytest.mark.parametrize("opt_type", ["SGD", "ADAMW", "ADAM", "RMSPROP", "LARS"])
@pytest.mark.parametrize("clip_type", ["full_model", "norm", "value"])
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_a_non_finite_gradient_skips_the_update(opt_type, clip_type, bad):
    model = toy_model()
    optimizer = Optimizer(model, solver_cfg(opt_type, clip_type)).build()
    fill_grads(model, seed=0)
    optimizer.step()  # one good step so that momentum / moments exist
    params_before = [p.detach().clone() for p in model.parameters()]
    state_before = copy.deepcopy(optimizer.state_dict()["state"])

    fill_grads(model, seed=1)
    model.head.fc.weight.grad[0, 0] = bad
    optimizer.step()

    assert guard_of(optimizer).num_skipped == 1
    for p, q in zip(model.parameters(), params_before):
        assert torch.equal(p, q)
    state_after = optimizer.state_dict()["state"]
    for index, entries in state_before.items():
        for name, value in entries.items():
            assert torch.equal(torch.as_tensor(state_after[index][name]), torch.as_tensor(value)), (index, name)

    fill_grads(model, seed=2)
    optimizer.step()  # training goes on
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not torch.equal(model.head.fc.weight, params_before[list(dict(model.named_parameters())).index(
        "head.fc.weight")])


def test_host_path_skips_are_logged(caplog):
    model = toy_model()
    optimizer = Optimizer(model, solver_cfg("RMSPROP", "full_model")).build()  # no fused kernels: host check
    fill_grads(model)
    model.head.fc.bias.grad[0] = math.nan
    optimizer.step()
    assert "Non-finite gradient: update skipped (1 skipped so far)" in caplog.text


def test_fused_kernels_skip_on_the_device_and_leave_found_inf_as_it_was():
    model = toy_model()
    optimizer = Optimizer(model, solver_cfg("ADAMW", "norm")).build()
    assert all(group["fused"] for group in optimizer.param_groups)
    fill_grads(model)
    model.head.fc.bias.grad[0] = math.inf
    optimizer.step()
    assert not hasattr(optimizer, "found_inf")  # nothing left behind for the next step
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)  # skipped without a host check
    # A flag a GradScaler set before the step survives it, combined with ours for the step itself.
    scaler_flag = torch.tensor(0.0)
    optimizer.found_inf = scaler_flag
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()  # the inf is still there: skipped again
    assert optimizer.found_inf is scaler_flag and scaler_flag.item() == 0.0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert guard_of(optimizer).num_skipped == 2
