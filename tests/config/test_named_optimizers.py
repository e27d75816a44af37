"""SOLVER.OPTIMIZERS: named entries laid over the top-level OPTIMIZER / SCHEDULER, validated with full keys."""
import pytest

from pet.config import ConfigError, get_cfg, optimizer_entries, validate_solver_cfg


def with_entries(entries, *overrides):
    cfg = get_cfg()
    cfg.merge_from_other_cfg({"SOLVER": {"OPTIMIZER": {"BASE_LR": 0.05}, "OPTIMIZERS": entries}})
    cfg.merge_from_list(list(overrides))
    return cfg.SOLVER


def test_without_entries_there_is_one_unnamed_entry_on_everything():
    (name, entry), = optimizer_entries(get_cfg().SOLVER).items()
    assert (name, entry.MODULES, entry.LOSSES, entry.STEP_INTERVAL) == ("", (), (), 1)
    assert entry.OPTIMIZER.BASE_LR == 0.001


def test_entries_inherit_the_top_level_keys_and_override_some():
    solver = with_entries({"bb": {"MODULES": ["backbone"]},
                           "head": {"MODULES": ["head"], "STEP_INTERVAL": 2, "LOSSES": ["loss_cls"],
                                    "OPTIMIZER": {"TYPE": "adamw", "BASE_LR": 1}, "SCHEDULER": {"POLICY": "COSINE"}}},
                          "SOLVER.OPTIMIZERS.bb.OPTIMIZER.MOMENTUM", "0.5")
    entries = optimizer_entries(solver)
    assert list(entries) == ["bb", "head"]
    bb, head = entries["bb"], entries["head"]
    assert (bb.OPTIMIZER.TYPE, bb.OPTIMIZER.BASE_LR, bb.OPTIMIZER.MOMENTUM, bb.SCHEDULER.POLICY) == ("SGD", 0.05, 0.5,
                                                                                                "STEP")
    assert (head.OPTIMIZER.TYPE, head.OPTIMIZER.BASE_LR, head.SCHEDULER.POLICY) == ("adamw", 1.0, "COSINE")
    assert isinstance(head.OPTIMIZER.BASE_LR, float)  # coerced against the top-level default
    assert (head.MODULES, head.LOSSES, head.STEP_INTERVAL) == (("head",), ("loss_cls",), 2)
    assert solver.OPTIMIZER.TYPE == "SGD"  # the top level is not modified


@pytest.mark.parametrize("entries, message", [
    ({"a": {"MODULES": ["head"], "SPEED": 1}}, r"unknown config key SOLVER\.OPTIMIZERS\.a\.SPEED; allowed: MODULES"),
    ({"a": {"LOSSES": []}, "b": {"STEP_INTERVAL": 2}},
     r"SOLVER\.OPTIMIZERS\.a and SOLVER\.OPTIMIZERS\.b both select no parameters, so both would take the rest"),
    ({"a": {"MODULES": "head"}}, r"SOLVER\.OPTIMIZERS\.a\.MODULES = 'head' is invalid; allowed: a list of module"),
    ({"a": {"PARAMS": ["head.("]}}, r"SOLVER\.OPTIMIZERS\.a\.PARAMS = \['head\.\('\] is invalid; allowed: a list of "
                                     r"regular expressions"),
    ({"a": {"MIN_NDIM": -1}}, r"SOLVER\.OPTIMIZERS\.a\.MIN_NDIM = -1 is invalid; allowed: an integer in \[0, 8\]"),
    ({"a": {"MIN_NDIM": 3, "MAX_NDIM": 2}}, r"SOLVER\.OPTIMIZERS\.a\.MIN_NDIM = 3 is above SOLVER\.OPTIMIZERS\.a\.MAX_NDIM"),
    ({"a": {"MODULES": ["head"], "STEP_INTERVAL": 0}}, r"SOLVER\.OPTIMIZERS\.a\.STEP_INTERVAL = 0 is invalid"),
    ({"a": {"MODULES": ["head"], "LOSSES": "loss_cls"}}, r"SOLVER\.OPTIMIZERS\.a\.LOSSES = 'loss_cls' is invalid"),
    ({"a": {"MODULES": ["head"], "OPTIMIZER": {"BASE_LRR": 1.0}}},
     r"unknown config key SOLVER\.OPTIMIZERS\.a\.OPTIMIZER\.BASE_LRR; did you mean BASE_LR\?"),
    ({"a": {"MODULES": ["head"], "OPTIMIZER": {"BASE_LR": -1.0}}},
     r"SOLVER\.OPTIMIZERS\.a\.OPTIMIZER\.BASE_LR = -1\.0 is invalid; allowed: a number > 0"),
    ({"a": {"MODULES": ["head"], "SCHEDULER": {"POLICY": "SAWTOOTH"}}},
     r"SOLVER\.OPTIMIZERS\.a\.SCHEDULER\.POLICY = 'SAWTOOTH' is invalid"),
    ({"a": 3}, r"SOLVER\.OPTIMIZERS\.a = 3 must be a group of keys"),
])
def test_bad_entries_name_their_full_key(entries, message):
    with pytest.raises(ConfigError, match=message):
        validate_solver_cfg(with_entries(entries))


def test_sibling_modules_with_a_common_prefix_do_not_overlap():
    entries = optimizer_entries(with_entries({"a": {"MODULES": ["layer1"]}, "b": {"MODULES": ["layer10"]}}))
    assert list(entries) == ["a", "b"]


def test_selectors_are_read_with_their_defaults():
    entries = optimizer_entries(with_entries({"m": {"MODULES": ["backbone"], "PARAMS": [r".*\.weight"], "MIN_NDIM": 2},
                                              "rest": {"OPTIMIZER": {"TYPE": "ADAMW"}}}))
    m, rest = entries["m"], entries["rest"]
    assert (m.MODULES, m.PARAMS, m.MIN_NDIM, m.MAX_NDIM) == (("backbone",), (r".*\.weight",), 2, 0)
    assert (rest.MODULES, rest.PARAMS, rest.MIN_NDIM, rest.MAX_NDIM) == ((), (), 0, 0)
