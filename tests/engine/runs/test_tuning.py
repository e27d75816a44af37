"""The search space of tools/tune.py read and checked against a config, a trial's config, and the metric's
direction; the searches themselves are in tests/tools/test_tune.py."""
import pytest

from pet.config import ConfigError, get_cfg
from pet.engine.runs.tuning.space import Param, read_space, trial_config
from pet.engine.runs.tuning.study import direction_of, short_names


def space_file(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_a_space_of_each_kind_is_read_with_yaml_1_1_exponents_taken_as_numbers(tmp_path):
    path = space_file(tmp_path, "SOLVER.OPTIMIZER.BASE_LR: {log_uniform: [1e-4, 1]}\n"
                                "SOLVER.OPTIMIZER.WEIGHT_DECAY: {uniform: [0, 1.0e-3]}\n"
                                "SOLVER.SCHEDULER.WARM_UP_ITERS: {int: [0, 50]}\n"
                                "SOLVER.SCHEDULER.STEPS: {choice: ['(300, 500)', '(400, 520)']}\n")
    assert read_space(path, get_cfg()) == [
        Param("SOLVER.OPTIMIZER.BASE_LR", "log_uniform", (1e-4, 1.0)),
        Param("SOLVER.OPTIMIZER.WEIGHT_DECAY", "uniform", (0.0, 1e-3)),
        Param("SOLVER.SCHEDULER.WARM_UP_ITERS", "int", (0, 50)),
        Param("SOLVER.SCHEDULER.STEPS", "choice", ("(300, 500)", "(400, 520)"))]


@pytest.mark.parametrize("text, message", [
    ("SOLVER.OPTIMIZER.BASE_LRR: {uniform: [0.1, 0.2]}", r"unknown config key SOLVER.OPTIMIZER.BASE_LRR; did you "
                                                         r"mean BASE_LR\?"),
    ("solver.optimizer.base_lr: {uniform: [0.1, 0.2]}", r"did you mean SOLVER.OPTIMIZER.BASE_LR\?"),
    ("SOLVER.OPTIMIZER: {uniform: [0.1, 0.2]}", r"SOLVER.OPTIMIZER is a group of keys"),
    ("OUTPUT_DIR: {choice: [a, b]}", r"OUTPUT_DIR cannot be searched: each trial runs in OUTPUT_DIR/trial_<k>"),
    ("SOLVER.OPTIMIZER.BASE_LR: {normal: [0, 1]}", r"SOLVER.OPTIMIZER.BASE_LR = \{'normal': \[0, 1\]\} is not a "
                                                   r"spec; write \{log_uniform: \[low, high\]\}"),
    ("SOLVER.OPTIMIZER.BASE_LR: [0.1, 0.2]", r"SOLVER.OPTIMIZER.BASE_LR = \[0.1, 0.2\] is not a spec"),
    ("SOLVER.OPTIMIZER.BASE_LR: {uniform: [0.1, 0.2], int: [1, 2]}", r"SOLVER.OPTIMIZER.BASE_LR = .* is not a spec"),
    ("SOLVER.OPTIMIZER.BASE_LR: {uniform: [0.1]}", r"SOLVER.OPTIMIZER.BASE_LR: uniform takes \[low, high\]"),
    ("SOLVER.OPTIMIZER.BASE_LR: {uniform: [0.2, 0.1]}", r"SOLVER.OPTIMIZER.BASE_LR: uniform \[0.2, 0.1\] needs "
                                                        r"low < high"),
    ("SOLVER.OPTIMIZER.BASE_LR: {uniform: [0.1, .nan]}", r"SOLVER.OPTIMIZER.BASE_LR: nan is not a finite number"),
    ("SOLVER.OPTIMIZER.BASE_LR: {uniform: [fast, 1]}", r"SOLVER.OPTIMIZER.BASE_LR: 'fast' is not a finite number"),
    ("SOLVER.OPTIMIZER.BASE_LR: {log_uniform: [0, 1]}", r"SOLVER.OPTIMIZER.BASE_LR: log_uniform \[0.0, 1.0\] needs "
                                                        r"0 < low"),
    ("SOLVER.OPTIMIZER.BASE_LR: {uniform: [-1, 0.1]}", r"SOLVER.OPTIMIZER.BASE_LR: the low end -1.0 makes the "
                                                       r"config invalid: SOLVER.OPTIMIZER.BASE_LR"),
    ("SOLVER.SCHEDULER.WARM_UP_ITERS: {int: [0, 2.5]}", r"SOLVER.SCHEDULER.WARM_UP_ITERS: int takes integer ends, "
                                                        r"got 2.5"),
    ("SOLVER.SCHEDULER.WARM_UP_ITERS: {uniform: [0, 5]}", r"the low end 0.0 makes the config invalid: "
                                                          r"SOLVER.SCHEDULER.WARM_UP_ITERS: expected a int"),
    ("SOLVER.OPTIMIZER.TYPE: {choice: [SGD]}", r"SOLVER.OPTIMIZER.TYPE: choice takes a list of at least two"),
    ("SOLVER.OPTIMIZER.TYPE: {choice: [SGD, SGD]}", r"SOLVER.OPTIMIZER.TYPE: choice \['SGD', 'SGD'\] holds a "
                                                    r"value twice"),
    ("SOLVER.OPTIMIZER.TYPE: {choice: [SGD, [1, 2]]}", r"SOLVER.OPTIMIZER.TYPE: the choice \[1, 2\] is not a "
                                                       r"string, number, bool or null"),
    ("SOLVER.SCHEDULER.POLICY: {choice: [STEP, NOPE]}", r"SOLVER.SCHEDULER.POLICY: the choice 'NOPE' makes the "
                                                        r"config invalid: SOLVER.SCHEDULER.POLICY = 'NOPE' is invalid"),
    ("1: {choice: [1, 2]}", r"the key 1 is not a config key"),
    ("{}", r"is empty"),
    ("[1, 2]", r"must hold a mapping of keys"),
])
def test_a_bad_space_is_one_config_error_naming_the_key(tmp_path, text, message):
    path = space_file(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as error:
        read_space(path, get_cfg())
    assert "\n" not in str(error.value)
    assert str(error.value).startswith((f"search space {path}", f"config file {path}")), str(error.value)


def test_a_trials_config_holds_its_values_and_folder_and_leaves_the_base_as_it_was(tmp_path):
    cfg = get_cfg()
    trial = trial_config(cfg, {"SOLVER.OPTIMIZER.BASE_LR": 0.02, "SOLVER.SCHEDULER.STEPS": "(300, 500)"},
                         str(tmp_path / "trial_3"))
    assert (trial.SOLVER.OPTIMIZER.BASE_LR, trial.SOLVER.SCHEDULER.STEPS) == (0.02, (300, 500))
    assert trial.OUTPUT_DIR == str(tmp_path / "trial_3") and cfg.OUTPUT_DIR == get_cfg().OUTPUT_DIR
    assert cfg.SOLVER.OPTIMIZER.BASE_LR == get_cfg().SOLVER.OPTIMIZER.BASE_LR
    with pytest.raises(ConfigError, match=r"SOLVER.SCHEDULER.STEPS = \(300, 500\) is invalid"):  # a combination
        trial_config(cfg, {"SOLVER.SCHEDULER.TOTAL_ITERS": 400, "SOLVER.SCHEDULER.STEPS": "(300, 500)"}, "out")


@pytest.mark.parametrize("metric, best_metric, best_mode, direction", [
    ("val/accuracy", "", "", "maximize"), ("val/mAP", "", "", "maximize"), ("val/loss", "", "", "minimize"),
    ("val/loss_cls", "", "", "minimize"), ("val/loss", "val/loss", "max", "maximize"),
    ("val/accuracy", "val/loss", "min", "maximize"),  # BEST_MODE belongs to BEST_METRIC only
])
def test_the_direction_comes_from_best_mode_or_the_metrics_name(metric, best_metric, best_mode, direction):
    cfg = get_cfg()
    cfg.merge_from_list(["TRAIN.BEST_METRIC", best_metric, "TRAIN.BEST_MODE", best_mode])
    assert direction_of(cfg, metric) == direction


def test_parameters_are_shown_by_their_last_part_where_it_is_unambiguous():
    assert short_names(["SOLVER.OPTIMIZER.BASE_LR", "SOLVER.OPTIMIZERS.head.OPTIMIZER.BASE_LR",
                        "SOLVER.SCHEDULER.WARM_UP_ITERS"]) == {
        "SOLVER.OPTIMIZER.BASE_LR": "SOLVER.OPTIMIZER.BASE_LR",
        "SOLVER.OPTIMIZERS.head.OPTIMIZER.BASE_LR": "SOLVER.OPTIMIZERS.head.OPTIMIZER.BASE_LR",
        "SOLVER.SCHEDULER.WARM_UP_ITERS": "WARM_UP_ITERS"}
