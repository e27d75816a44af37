"""TRAIN.LOGGERS is a tuple of distinct tracker names; TRAIN.MLFLOW_URI is a URI, ignored (and said so) unless
TRAIN.LOGGERS names mlflow; a bad value is one error line before anything is written."""
import pytest

from pet.config import ConfigError, get_cfg, ignored_keys, validate_cfg


def validated(*overrides):
    cfg = get_cfg()
    cfg.merge_from_list(list(overrides))
    validate_cfg(cfg)
    return cfg


def test_the_default_is_tensorboard_alone():
    assert validated().TRAIN.LOGGERS == ("tensorboard",)
    assert validated().TRAIN.MLFLOW_URI == ""


@pytest.mark.parametrize("value", ["()", "('mlflow',)", "('wandb', 'tensorboard')",
                                   "['tensorboard', 'mlflow', 'wandb']"])
def test_any_distinct_names_of_the_three_are_taken(value):
    validated("TRAIN.LOGGERS", value)


@pytest.mark.parametrize("value", [("neptune",), ("mlflow", "mlflow"), ("TensorBoard",), (1,), ("",), ("mlflow", None)])
def test_other_names_and_repeats_are_refused_naming_the_key_and_the_names(value):
    cfg = get_cfg()
    cfg.TRAIN.LOGGERS = value
    with pytest.raises(ConfigError) as e:
        validate_cfg(cfg)
    assert str(e.value) == (f"TRAIN.LOGGERS = {value!r} is invalid; allowed: a tuple of distinct names from "
                            "tensorboard | mlflow | wandb (e.g. ('tensorboard', 'mlflow')), or ()")


def test_a_single_name_without_a_tuple_is_refused_at_the_merge():
    with pytest.raises(ConfigError, match=r"TRAIN\.LOGGERS: expected a tuple"):
        validated("TRAIN.LOGGERS", "mlflow")


@pytest.mark.parametrize("value", [" sqlite:///runs.db", "http://host:5000\n"])
def test_an_mlflow_uri_with_surrounding_blanks_is_refused(value):
    cfg = get_cfg()
    cfg.TRAIN.MLFLOW_URI = value
    with pytest.raises(ConfigError, match=r"TRAIN\.MLFLOW_URI = .* is invalid; allowed: an MLflow tracking URI"):
        validate_cfg(cfg)


def test_an_mlflow_uri_without_mlflow_in_loggers_is_reported_as_ignored():
    def ignored(*overrides):
        return {key: why for key, _, why in ignored_keys(validated(*overrides))}

    assert ignored("TRAIN.MLFLOW_URI", "sqlite:///runs.db")["TRAIN.MLFLOW_URI"] == \
        "TRAIN.LOGGERS does not name mlflow"
    assert "TRAIN.MLFLOW_URI" not in ignored("TRAIN.MLFLOW_URI", "sqlite:///runs.db", "TRAIN.LOGGERS", "('mlflow',)")


@pytest.mark.parametrize("value, message", [
    ("('neptune',)", r"TRAIN\.LOGGERS = \('neptune',\) is invalid; allowed: a tuple of distinct names"),
    ("('mlflow', 'mlflow')", r"TRAIN\.LOGGERS = \('mlflow', 'mlflow'\) is invalid"),
])
def test_train_net_refuses_bad_loggers_in_one_line_and_writes_nothing(tmp_path, capsys, value, message):
    import re

    from tests.engine.test_user_builders import USER
    from tests.tools.test_cli_errors import DEFAULT_CFG, train_net

    short = ["SOLVER.SCHEDULER.TOTAL_ITERS", "2", "SOLVER.SCHEDULER.STEPS", "(1,)", "SOLVER.SCHEDULER.WARM_UP_ITERS",
             "0"]  # were the value taken, the run would be over in a second
    assert train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(tmp_path / "out"), *USER, *short,
                                          "TRAIN.LOGGERS", value]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0]), lines
    assert not (tmp_path / "out").exists()
