"""`Optimizer(...).build()`: the class, its arguments mapped by meaning, kernels, and refusals."""
import logging

import pytest
import torch
from torch import nn

from pet.config import ConfigError, get_cfg
from pet.solver import LARS, Optimizer
from tests.toy_model import fill_grads, toy_model


def build(*overrides, model=None):
    cfg = get_cfg()
    cfg.merge_from_list(list(overrides))
    return Optimizer(model if model is not None else toy_model(), cfg.SOLVER.OPTIMIZER).build()


@pytest.mark.parametrize("name, cls", [("SGD", torch.optim.SGD), ("adamw", torch.optim.AdamW),
                                       ("Adam", torch.optim.Adam), ("RMSPROP", torch.optim.RMSprop),
                                       ("lars", LARS), ("NAdam", torch.optim.NAdam), ("ADAGRAD", torch.optim.Adagrad)])
def test_type_names_are_case_insensitive_and_give_the_plain_torch_class(name, cls):
    optimizer = build("SOLVER.OPTIMIZER.TYPE", name)
    assert type(optimizer) is cls  # no subclass, no class swapping


def test_sgd_gets_momentum_and_nesterov():
    group = build("SOLVER.OPTIMIZER.MOMENTUM", 0.8, "SOLVER.OPTIMIZER.NESTEROV", True).param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (0.8, True)


def test_adam_family_gets_betas_and_eps():
    group = build("SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.BETAS", [0.8, 0.99],
                  "SOLVER.OPTIMIZER.EPS", 1e-6).param_groups[0]
    assert (group["betas"], group["eps"]) == ((0.8, 0.99), 1e-6)


def test_rmsprop_gets_momentum_and_eps():
    group = build("SOLVER.OPTIMIZER.TYPE", "RMSPROP", "SOLVER.OPTIMIZER.MOMENTUM", 0.5,
                  "SOLVER.OPTIMIZER.EPS", 1e-5).param_groups[0]
    assert (group["momentum"], group["eps"]) == (0.5, 1e-5)


def test_adam_updates_follow_the_param_rules():
    # Pet's ADAM ignored every rule (one group, one decay). Ours: Adam's first step moves each parameter by
    # about lr (|m/sqrt(v)| = 1 at step 1), so a group's lr shows in the size of its update.
    model = toy_model()
    optimizer = build("SOLVER.OPTIMIZER.TYPE", "ADAM", "SOLVER.OPTIMIZER.BASE_LR", 0.01,
                      "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.1, "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.0, model=model)
    before_backbone = model.backbone.conv.weight.detach().clone()
    before_head = model.head.fc.weight.detach().clone()
    fill_grads(model)
    optimizer.step()
    assert (model.backbone.conv.weight - before_backbone).abs().max().item() == pytest.approx(0.001, rel=1e-3)
    assert (model.head.fc.weight - before_head).abs().max().item() == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize("name", ["SGD", "ADAM", "ADAMW"])
def test_fused_kernels_are_chosen_on_cpu(name):
    optimizer = build("SOLVER.OPTIMIZER.TYPE", name)
    assert all(group["fused"] for group in optimizer.param_groups)


def test_fused_falls_back_when_torch_refuses_it():
    model = nn.Module()
    model.z = nn.Parameter(torch.ones(3, dtype=torch.complex64))  # fused kernels take real floats only
    optimizer = build("SOLVER.OPTIMIZER.BASE_LR", 0.5, "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.0, model=model)
    assert not optimizer.param_groups[0]["fused"]
    model.z.grad = torch.full((3,), 1 + 1j, dtype=torch.complex64)
    optimizer.step()
    torch.testing.assert_close(model.z.detach(), torch.full((3,), 0.5 - 0.5j, dtype=torch.complex64))


def test_classes_without_fused_kernels_use_the_torch_default():
    assert "fused" not in build("SOLVER.OPTIMIZER.TYPE", "RMSPROP").param_groups[0]


def test_fused_and_reference_sgd_agree():
    model, reference = toy_model(), toy_model()
    optimizer = build("SOLVER.OPTIMIZER.BASE_LR", 0.1, "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.01, model=model)
    plain = torch.optim.SGD([{"params": g["params"], "lr": g["lr"], "weight_decay": g["weight_decay"]}
                             for g in build("SOLVER.OPTIMIZER.BASE_LR", 0.1, "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.01,
                                            model=reference).param_groups], momentum=0.9, foreach=False)
    assert_same_updates(model, optimizer, reference, plain)


def assert_same_updates(model, optimizer, reference, reference_optimizer, steps=3):
    """Step both on the same gradients; their parameters must stay equal (up to rounding)."""
    for step in range(steps):
        fill_grads(model, seed=step)
        fill_grads(reference, seed=step)
        optimizer.step()
        reference_optimizer.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def test_an_optimizer_without_weight_decay_refuses_a_nonzero_decay():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZER\.TYPE = Rprop has no weight decay"):
        build("SOLVER.OPTIMIZER.TYPE", "RPROP")
    optimizer = build("SOLVER.OPTIMIZER.TYPE", "RPROP", "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.0)
    assert type(optimizer) is torch.optim.Rprop


def test_a_changed_key_the_class_cannot_use_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="pet.solver.optimizers.builder"):
        build("SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.MOMENTUM", 0.5)
    assert "SOLVER.OPTIMIZER.MOMENTUM = 0.5 is not used by AdamW" in caplog.text


def test_unknown_type_lists_the_allowed_names():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZER\.TYPE = 'SGDD' is invalid; allowed: .*ADAMW.*LARS.*SGD"):
        build("SOLVER.OPTIMIZER.TYPE", "SGDD")


@pytest.mark.parametrize("name, reason", [("LBFGS", "closure"), ("SparseAdam", "sparse gradients")])
def test_classes_a_grouped_solver_cannot_drive_are_refused_with_the_reason(name, reason):
    with pytest.raises(ConfigError, match=rf"SOLVER.OPTIMIZER.TYPE = '{name}' is not supported: .*{reason}"):
        build("SOLVER.OPTIMIZER.TYPE", name)


def test_muon_is_refused_for_a_model_with_vectors_and_points_to_named_optimizers():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZER\.TYPE = Muon updates weight matrices and convolution "
                                          r"kernels only, and 9 trainable parameters are not \(e\.g\. "
                                          r"backbone\.conv\.bias of shape \(8,\)\).*SOLVER\.OPTIMIZERS with MIN_NDIM 2"):
        build("SOLVER.OPTIMIZER.TYPE", "MUON")


def test_muon_builds_for_a_model_of_matrices_with_momentum_and_nesterov_but_not_eps(caplog):
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    with caplog.at_level(logging.WARNING, logger="pet.solver.optimizers.builder"):
        optimizer = build("SOLVER.OPTIMIZER.TYPE", "MUON", "SOLVER.OPTIMIZER.MOMENTUM", 0.8,
                          "SOLVER.OPTIMIZER.NESTEROV", True, "SOLVER.OPTIMIZER.EPS", 1e-6, model=model)
    assert type(optimizer) is torch.optim.Muon
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["eps"]) == (0.8, True, 1e-7)  # eps: Muon's own default
    assert "SOLVER.OPTIMIZER.EPS = 1e-06 is not used by Muon (its eps guards the Newton-Schulz" in caplog.text


def test_adafactor_builds_without_our_eps_in_its_pair_of_eps():
    model = toy_model()
    optimizer = build("SOLVER.OPTIMIZER.TYPE", "ADAFACTOR", model=model)
    assert type(optimizer) is torch.optim.Adafactor
    assert all(group["eps"] == (None, 1e-3) for group in optimizer.param_groups)  # the class's own pair
    before = model.head.fc.weight.detach().clone()
    fill_grads(model)
    optimizer.step()
    assert not torch.equal(model.head.fc.weight, before)
def test_build_logs_the_parameter_group_report(caplog):
    with caplog.at_level(logging.INFO, logger="pet.solver.optimizers.builder"):
        build()
    assert "Optimizer SGD with 2 parameter groups" in caplog.text
    assert "embed+bias+norm" in caplog.text


@pytest.mark.parametrize("implementation, expected", [("AUTO", {"fused": True}), ("FUSED", {"fused": True}),
                                                      ("FOREACH", {"foreach": True, "fused": None}),
                                                      ("FOR_LOOP", {"foreach": False, "fused": None})])
def test_kernel_implementation_can_be_forced(implementation, expected):
    optimizer = build("SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.KERNELS.IMPLEMENTATION", implementation)
    for key, value in expected.items():
        assert all(group[key] == value for group in optimizer.param_groups), key


def test_auto_uses_foreach_where_there_is_no_fused_kernel():
    assert all(g["foreach"] for g in build("SOLVER.OPTIMIZER.TYPE", "RMSPROP").param_groups)


@pytest.mark.parametrize("opt_type, implementation", [("RMSPROP", "FUSED"), ("LARS", "FOREACH")])
def test_an_unavailable_implementation_is_a_config_error(opt_type, implementation):
    with pytest.raises(ConfigError, match=rf"SOLVER\.OPTIMIZER\.KERNELS\.IMPLEMENTATION = '{implementation}' is not "
                                          r"available for"):
        build("SOLVER.OPTIMIZER.TYPE", opt_type, "SOLVER.OPTIMIZER.KERNELS.IMPLEMENTATION", implementation)


@pytest.mark.parametrize("implementation", ["FUSED", "FOREACH", "FOR_LOOP"])
def test_every_implementation_makes_the_same_updates(implementation):
    reference, model = toy_model(), toy_model()
    plain = build("SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.KERNELS.IMPLEMENTATION", "FOR_LOOP",
                  model=reference)
    forced = build("SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.KERNELS.IMPLEMENTATION", implementation,
                   model=model)
    assert_same_updates(model, forced, reference, plain)


def test_a_backbone_lr_factor_on_a_model_without_a_backbone_is_said(caplog):
    import logging

    from pet.config import get_cfg
    from pet.solver import Optimizer

    cfg = get_cfg().SOLVER.OPTIMIZER
    cfg.BACKBONE_LR_FACTOR = 0.1
    plain = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    with caplog.at_level(logging.WARNING, logger="pet.solver.optimizers.builder"):
        Optimizer(plain, cfg).build()
        Optimizer(torch.nn.ModuleDict({"backbone": torch.nn.Linear(2, 2)}), cfg).build()  # it has one: silent
    (record,) = caplog.records
    assert record.getMessage() == ("SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR = 0.1 does nothing: Sequential has no module "
                                   "'backbone' (its modules: 0, 1); set SOLVER.OPTIMIZER.BACKBONE_PREFIX to the "
                                   "module to slow down")
