"""LARS against a per-tensor reference written from the paper's formula, and its norm/bias exclusion."""
import copy
import io

import pytest
import torch
from torch import nn

from pet.config import get_cfg
from pet.solver import LARS, Optimizer
from tests.toy_model import fill_grads, toy_model


def reference_lars_step(params, buffers, lr, momentum, wd, eta, eps, nesterov, exclude):
    """One LARS update, one tensor at a time, in plain arithmetic."""
    for i, p in enumerate(params):
        g = p.grad
        d = g + wd * p.detach()
        w_norm, g_norm = p.detach().norm().item(), g.norm().item()
        if not exclude and w_norm > 0 and g_norm > 0:
            d = d * (eta * w_norm / (g_norm + wd * w_norm + eps))
        buffers[i] = d.clone() if buffers[i] is None else momentum * buffers[i] + d
        step = d + momentum * buffers[i] if nesterov else buffers[i]
        with torch.no_grad():
            p -= lr * step


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("exclude", [False, True])
def test_lars_matches_the_per_tensor_formula(nesterov, exclude):
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(7)), nn.Parameter(torch.zeros(4))]
    ref_params = copy.deepcopy(params)
    hyper = dict(lr=0.3, momentum=0.9, wd=0.01, eta=0.02, eps=1e-8, nesterov=nesterov, exclude=exclude)
    optimizer = LARS(params, lr=0.3, momentum=0.9, weight_decay=0.01, trust_coefficient=0.02, eps=1e-8,
                     nesterov=nesterov, lars_exclude=exclude)
    buffers = [None] * len(params)
    for step in range(4):
        generator = torch.Generator().manual_seed(step)
        for p, q in zip(params, ref_params):
            p.grad = torch.randn(p.shape, generator=generator)
            q.grad = p.grad.clone()
        optimizer.step()
        reference_lars_step(ref_params, buffers, **hyper)
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p, q)


def test_trust_ratio_is_one_for_a_zero_gradient_or_weight():
    p = nn.Parameter(torch.zeros(3))
    optimizer = LARS([p], lr=1.0, momentum=0.0, weight_decay=0.0, trust_coefficient=0.001)
    p.grad = torch.ones(3)
    optimizer.step()
    torch.testing.assert_close(p.detach(), -torch.ones(3))  # |w| = 0: plain SGD step, not a zero step


def test_lars_groups_exclude_norm_and_bias_by_default():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", "LARS", "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.5])
    optimizer = Optimizer(toy_model(), cfg.SOLVER.OPTIMIZER).build()
    exclusion = {g["name"]: g["lars_exclude"] for g in optimizer.param_groups}
    assert exclusion == {"embed": False, "backbone.embed": False, "backbone.weight": False,
                         "backbone.bias+norm": True, "weight": False, "bias+norm": True}
    assert optimizer.param_groups[0]["trust_coefficient"] == 0.001


def test_lars_exclusion_can_be_turned_off():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", "LARS", "SOLVER.OPTIMIZER.LARS.EXCLUDE_NORM_AND_BIAS", False,
                         "SOLVER.OPTIMIZER.LARS.TRUST_COEFFICIENT", 0.01])
    optimizer = Optimizer(toy_model(), cfg.SOLVER.OPTIMIZER).build()
    assert not any(g["lars_exclude"] for g in optimizer.param_groups)
    assert optimizer.param_groups[0]["trust_coefficient"] == 0.01


def test_lars_state_round_trips():
    model = toy_model()
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER.TYPE = "LARS"
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    fill_grads(model)
    optimizer.step()
    clone_model = copy.deepcopy(model)
    clone = Optimizer(clone_model, cfg.SOLVER.OPTIMIZER).build()
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)  # as a checkpoint does: no tensor shared with the original
    buffer.seek(0)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    fill_grads(model, seed=5)
    fill_grads(clone_model, seed=5)
    optimizer.step()
    clone.step()
    for p, q in zip(model.parameters(), clone_model.parameters()):
        assert torch.equal(p, q)


def test_invalid_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="invalid LARS hyperparameters"):
        LARS([nn.Parameter(torch.ones(1))], lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        LARS([nn.Parameter(torch.ones(1))], momentum=0.0, nesterov=True)
