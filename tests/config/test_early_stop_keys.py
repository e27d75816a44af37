"""TRAIN.EARLY_STOP: every bad value and combination is one ConfigError naming the key; the keys PATIENCE 0 makes
meaningless are reported; an empty METRIC and MODE are taken from TRAIN.BEST_METRIC / BEST_MODE."""
import pytest

from pet.config import ConfigError, get_cfg, ignored_keys, validate_cfg
from pet.engine.loop.early_stop import early_stopping
from pet.engine.loop.hooks import EvalHook

ON = ["TRAIN.EVAL_PERIOD", 100, "TRAIN.EARLY_STOP.PATIENCE", 3, "TRAIN.EARLY_STOP.METRIC", "val/accuracy"]


def config(*overrides):
    cfg = get_cfg()
    cfg.merge_from_list(list(overrides))
    return cfg


@pytest.mark.parametrize("overrides, message", [
    (["TRAIN.EARLY_STOP.PATIENCE", -1], "TRAIN.EARLY_STOP.PATIENCE = -1 is invalid; allowed: an integer >= 0 (0: off)"),
    (["TRAIN.EARLY_STOP.PATIENCE", 2.5], "TRAIN.EARLY_STOP.PATIENCE: expected a int like 0, got 2.5"),  # merging
    (["TRAIN.EARLY_STOP.MIN_DELTA", -0.1], "TRAIN.EARLY_STOP.MIN_DELTA = -0.1 is invalid; allowed: a number >= 0"),
    (["TRAIN.EARLY_STOP.MIN_DELTA", float("nan")], "TRAIN.EARLY_STOP.MIN_DELTA = nan is invalid"),
    (["TRAIN.EARLY_STOP.MODE", "up"], "TRAIN.EARLY_STOP.MODE = 'up' is invalid; allowed: \"\" | max | min"),
    (["TRAIN.EVAL_PERIOD", 0, "TRAIN.EARLY_STOP.PATIENCE", 3, "TRAIN.BEST_METRIC", "val/loss"],
     "TRAIN.EARLY_STOP.PATIENCE = 3 needs TRAIN.EVAL_PERIOD > 0 (got 0)"),
    (["TRAIN.EVAL_PERIOD", 50, "TRAIN.EARLY_STOP.PATIENCE", 3],
     "TRAIN.EARLY_STOP.PATIENCE = 3 needs a result to watch: set TRAIN.EARLY_STOP.METRIC (or TRAIN.BEST_METRIC)"),
])
def test_a_bad_value_is_one_error_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        validate_cfg(config(*overrides))  # (or the merge itself, for a value of another type)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_early_stopping_with_periodic_evaluations_and_a_metric_is_valid():
    validate_cfg(config(*ON, "TRAIN.EARLY_STOP.MIN_DELTA", 1))  # an integer delta is a number too
    validate_cfg(config("TRAIN.EVAL_PERIOD", 100, "TRAIN.EARLY_STOP.PATIENCE", 3, "TRAIN.BEST_METRIC", "val/loss"))


def test_the_keys_patience_0_makes_meaningless_are_reported():
    cfg = config("TRAIN.EARLY_STOP.METRIC", "val/loss", "TRAIN.EARLY_STOP.MIN_DELTA", 0.5,
                 "TRAIN.EARLY_STOP.MODE", "min")
    found = {key: (value, why) for key, value, why in ignored_keys(cfg)}
    assert found == {f"TRAIN.EARLY_STOP.{key}": (value, "TRAIN.EARLY_STOP.PATIENCE is 0 (early stopping is off)")
                     for key, value in (("METRIC", "val/loss"), ("MIN_DELTA", 0.5), ("MODE", "min"))}
    assert ignored_keys(config(*ON, "TRAIN.EARLY_STOP.MIN_DELTA", 0.5)) == []


@pytest.mark.parametrize("overrides, metric, mode", [
    ([], "val/accuracy", "max"),
    (["TRAIN.EARLY_STOP.METRIC", "", "TRAIN.BEST_METRIC", "val/loss"], "val/loss", "min"),
    (["TRAIN.EARLY_STOP.METRIC", "", "TRAIN.BEST_METRIC", "val/error", "TRAIN.BEST_MODE", "min"], "val/error", "min"),
    # BEST_MODE is of BEST_METRIC, not of another metric
    (["TRAIN.BEST_METRIC", "val/error", "TRAIN.BEST_MODE", "min"], "val/accuracy", "max"),
    (["TRAIN.EARLY_STOP.MODE", "min"], "val/accuracy", "min"),
])
def test_the_metric_and_direction_of_each_config(overrides, metric, mode):
    cfg = config(*ON, *overrides)
    validate_cfg(cfg)
    hook = early_stopping(cfg, EvalHook(100, dict))
    assert (hook.metric, hook.mode, hook.patience) == (metric, mode, 3)
    assert early_stopping(config(), EvalHook(0, dict)) is None
