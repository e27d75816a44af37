"""Solver units: one optimizer per SOLVER.OPTIMIZERS entry, on its own modules, with its own schedule."""
import logging

import pytest
import torch

from pet.config import ConfigError, get_cfg
from pet.solver.units import build_solver_units, check_unit_support
from tests.toy_model import toy_model


def units_for(entries):
    cfg = get_cfg()
    cfg.merge_from_other_cfg({"SOLVER": {"OPTIMIZER": {"BASE_LR": 0.1}, "OPTIMIZERS": entries}})
    return build_solver_units(toy_model(), cfg.SOLVER)


def test_one_unit_without_entries():
    (unit,) = build_solver_units(toy_model(), get_cfg().SOLVER)
    assert unit.name == "" and unit.is_due(0) and len(unit.params()) == 14


def test_each_entry_optimizes_its_modules_with_full_names_and_its_own_schedule():
    backbone, head = units_for({
        "backbone": {"MODULES": ["backbone"], "OPTIMIZER": {"BACKBONE_LR_FACTOR": 0.5}},
        "head": {"MODULES": ["head", "decoder"], "STEP_INTERVAL": 3, "OPTIMIZER": {"TYPE": "ADAMW"},
                 "SCHEDULER": {"POLICY": "COSINE", "WARM_UP_ITERS": 0}}})
    names = [n for g in backbone.optimizer.param_groups for n in g["param_names"]]
    assert all(n.startswith("backbone.") for n in names) and len(names) == 8  # the frozen Linear is left out
    assert {g["lr"] for g in backbone.optimizer.param_groups} == {0.1 * 0.5 * 0.1}  # factor, then warmup 0.1
    assert sorted(n for g in head.optimizer.param_groups for n in g["param_names"]) == [
        "decoder.bias", "head.fc.bias", "head.fc.weight", "head.gn.bias", "head.gn.weight"]
    assert type(head.optimizer).__name__ == "AdamW" and head.scheduler.schedule.policy == "COSINE"
    assert [head.is_due(i) for i in range(6)] == [False, False, True, False, False, True]


def test_parameters_in_no_entry_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="pet.solver.units"):
        units_for({"head": {"MODULES": ["head"]}})
    assert "trainable parameters are in no SOLVER.OPTIMIZERS entry and will not train, e.g. cls_token" in caplog.text


def test_an_entry_on_modules_without_trainable_parameters_is_refused():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZERS\.x\.MODULES = \('backbone\.frozen',\): these modules "
                                          r"have no trainable parameters"):
        units_for({"x": {"MODULES": ["backbone.frozen"]}})


def test_a_module_name_that_is_not_in_the_model_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZERS\.h\.MODULES: 'haed' is not a module of the model; "
                                          r"did you mean head\? its top-level modules: backbone, head, neck, decoder"):
        units_for({"b": {"MODULES": ["backbone"]}, "h": {"MODULES": ["haed"]}})


def test_named_errors_carry_the_entry_key():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZERS\.h\.OPTIMIZER\.TYPE = Rprop has no weight decay"):
        units_for({"h": {"MODULES": ["head"], "OPTIMIZER": {"TYPE": "RPROP"}}})


def test_group_labels_name_the_optimizer_only_when_there_are_several():
    (single,) = build_solver_units(toy_model(), get_cfg().SOLVER)
    assert single.group_labels() == ["embed+bias+norm", "weight"]
    backbone, head = units_for({"backbone": {"MODULES": ["backbone"]}, "head": {"MODULES": ["head"]}})
    assert head.group_labels() == ["head/weight", "head/bias+norm"]
    assert backbone.group_labels()[0].startswith("backbone/backbone.")


@pytest.mark.parametrize("warmup, total, warned", [(500, 30, True), (30, 30, True), (29, 30, False)])
def test_a_warmup_that_does_not_end_before_the_run_is_warned_about_once(caplog, warmup, total, warned):
    from pet.solver.units import build_run_solver

    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.SCHEDULER.WARM_UP_ITERS", warmup, "SOLVER.SCHEDULER.TOTAL_ITERS", total,
                         "SOLVER.SCHEDULER.STEPS", "(20,)"])
    with caplog.at_level(logging.WARNING, logger="pet.solver.units"):
        build_run_solver(toy_model(), cfg, iter_per_epoch=10)
    expected = (f"SOLVER.SCHEDULER.WARM_UP_ITERS = {warmup} updates is not shorter than the run "
                f"(SOLVER.SCHEDULER.TOTAL_ITERS = {total} updates): the lr never reaches BASE_LR")
    assert [r.getMessage() for r in caplog.records].count(expected) == (1 if warned else 0)
    assert warned or "WARM_UP_ITERS" not in caplog.text


def test_fsdp_refuses_float16_and_per_loss_optimizers():
    with pytest.raises(ConfigError, match=r"SOLVER.AMP.DTYPE float16 cannot be combined with DISTRIBUTED.STRATEGY"):
        check_unit_support([], torch.float16, world_size=2, sharded=True)
    check_unit_support([], torch.bfloat16, world_size=2, sharded=True)  # bfloat16 needs no GradScaler
    check_unit_support([], torch.float16, world_size=2, sharded=False)
