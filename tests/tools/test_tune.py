"""tools/tune.py end to end: Optuna trials of a tiny user model (8 updates each), run in process; and one slow search
on two processes under torchrun, where a pruned trial stops both after the same iteration."""
import json
import os
import subprocess
import sys
import time

import pytest

from pet.config import get_cfg
from tests.engine.test_user_builders import USER
from tests.tools.conftest import DEFAULT_CFG, ROOT, environment
from tests.tools.test_cli_errors import load_tool

optuna = pytest.importorskip("optuna")
tune = load_tool("tune")

TINY = [*USER, "SOLVER.SCHEDULER.TOTAL_ITERS", "8", "SOLVER.SCHEDULER.STEPS", "(6,)", "SOLVER.SCHEDULER.WARM_UP_ITERS",
        "2", "TRAIN.BATCH_SIZE", "8", "TRAIN.CHECKPOINT_PERIOD", "8", "TRAIN.WRITER_PERIOD", "1"]
SPACE = "SOLVER.OPTIMIZER.BASE_LR: {log_uniform: [1.0e-3, 0.3]}\nSOLVER.OPTIMIZER.WEIGHT_DECAY: {uniform: [0, 1.0e-3]}\n"


def space_file(tmp_path, text=SPACE):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def tune_in_process(output, space, *args):
    return tune.run(tune.main, ["--cfg", DEFAULT_CFG, "--space", space, "OUTPUT_DIR", str(output), *TINY, *args])


def load_study(output):
    return optuna.load_study(study_name=os.path.basename(output), storage=f"sqlite:///{output}/study.db")


def metrics(folder):
    return [json.loads(line) for line in open(folder / "metrics.json")]


def config_of(path):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    return cfg


def test_trials_are_runs_valued_by_their_final_evaluation_and_a_second_search_continues_the_study(tmp_path, capsys):
    output, space = tmp_path / "search", space_file(tmp_path)
    # val/loss: a value that differs between trials (the tiny task is often 100% accurate), and lowest is best.
    assert tune_in_process(output, space, "--trials", "2", "--pruner", "none", "--metric", "val/loss") == 0
    assert tune_in_process(output, space, "--trials", "1", "--pruner", "none", "--metric", "val/loss") == 0
    out = capsys.readouterr().out
    trials = load_study(output).trials
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state.name == "COMPLETE" for t in trials)
    assert trials[2].params != trials[0].params  # the continued search drew new values, not the first ones again
    for trial in trials:
        folder = output / f"trial_{trial.number}"
        rows = metrics(folder)  # the run's own record, written without Optuna
        assert rows[-1]["iteration"] == 7 and trial.value == rows[-1]["val/loss"]
        cfg = config_of(folder / "config.yaml")
        assert cfg.OUTPUT_DIR == str(folder)
        assert cfg.SOLVER.OPTIMIZER.BASE_LR == trial.params["SOLVER.OPTIMIZER.BASE_LR"]
        assert cfg.SOLVER.OPTIMIZER.WEIGHT_DECAY == trial.params["SOLVER.OPTIMIZER.WEIGHT_DECAY"]
        assert f"tune: trial {trial.number}: BASE_LR=" in out
    assert len({t.value for t in trials}) == 3
    best = min(trials, key=lambda t: t.value)
    best_config, trial_config = config_of(output / "best_config.yaml"), config_of(output / f"trial_{best.number}" /
                                                                                  "config.yaml")
    assert best_config.OUTPUT_DIR == str(output / "best")
    best_config.OUTPUT_DIR = trial_config.OUTPUT_DIR
    assert best_config == trial_config
    assert f"tune: best trial {best.number}: val/loss = {best.value:.6g} with BASE_LR=" in out
    for name in ("optimization_history.png", "param_importances.png"):
        assert (output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class AlwaysPrune(optuna.pruners.BasePruner):
    """A pruner that stops every trial at its first report."""

    def prune(self, study, trial):
        return True


def test_a_pruned_trial_stops_at_the_evaluation_and_is_recorded_pruned(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(optuna.pruners, "MedianPruner", AlwaysPrune)
    output = tmp_path / "search"
    assert tune_in_process(output, space_file(tmp_path), "--trials", "1", "TRAIN.EVAL_PERIOD", "3") == 0
    out, err = capsys.readouterr()
    (trial,) = load_study(output).trials
    assert trial.state.name == "PRUNED"
    rows = metrics(output / "trial_0")
    assert rows[-1]["iteration"] == 2  # the first evaluation, after 3 updates
    assert trial.intermediate_values == {2: rows[-1]["val/accuracy"]}
    assert not (output / "trial_0" / "model_final.pth").exists()
    assert "tune: trial 0: " in out and "-> pruned after the evaluation at iteration 2 (val/accuracy = " in out
    assert "Traceback" not in out + err and not err.strip()
    assert "no trial has completed yet: no best_config.yaml" in out and not (output / "best_config.yaml").exists()


def test_a_trial_that_fails_is_marked_failed_and_the_search_goes_on(tmp_path, capsys):
    # Both choices name an optimizer that writes NaN into the weights at its third update: the run stops at its
    # checkpoint after 4 updates (NonFiniteWeightsError).
    space = space_file(tmp_path, "SOLVER.OPTIMIZER.TYPE: {choice: ['tests.user_builders:PoisonedSGD', "
                                 "'tests.user_builders.PoisonedSGD']}\n")
    output = tmp_path / "search"
    assert tune_in_process(output, space, "--trials", "2", "TRAIN.CHECKPOINT_PERIOD", "4") == 0
    out = capsys.readouterr().out
    assert [t.state.name for t in load_study(output).trials] == ["FAIL", "FAIL"]
    assert "tune: trial 1: TYPE=tests.user_builders" in out and "failed: the model's weights hold inf or NaN" in out
    assert "2 trials: 0 complete, 0 pruned, 2 failed" in out


def test_a_trial_left_running_by_a_killed_search_is_marked_failed_by_the_next(tmp_path, capsys, monkeypatch):
    from pet.engine.runs.tuning import study as tuning_study

    monkeypatch.setattr(tuning_study, "HEARTBEAT_S", 1)
    monkeypatch.setattr(tuning_study, "GRACE_S", 1)
    output = tmp_path / "search"
    output.mkdir()
    # What a search killed in its trial leaves: the trial RUNNING, with a last heartbeat that gets old.
    storage = optuna.storages.RDBStorage(f"sqlite:///{output}/study.db", heartbeat_interval=1, grace_period=1)
    killed = optuna.create_study(storage=storage, study_name="search", direction="maximize").ask()
    storage.record_heartbeat(killed._trial_id)
    time.sleep(2.5)
    assert tune_in_process(output, space_file(tmp_path), "--trials", "1") == 0
    assert "tune: trial 0 was left running by a process that stopped: marked FAIL" in capsys.readouterr().out
    assert [(t.number, t.state.name) for t in load_study(output).trials] == [(0, "FAIL"), (1, "COMPLETE")]


def test_a_metric_the_evaluation_does_not_report_stops_the_search_with_one_error_line(tmp_path, capsys):
    output = tmp_path / "search"
    code = tune_in_process(output, space_file(tmp_path), "--trials", "3", "--metric", "val/nope", "TRAIN.EVAL_PERIOD",
                           "3")
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == ["error: --metric val/nope is not among the evaluation's results (val/accuracy, "
                                   "val/loss)"]
    assert [t.state.name for t in load_study(output).trials] == ["FAIL"]  # the first trial, and no other


def test_a_bad_space_is_one_error_line_and_nothing_is_written(tmp_path, capsys):
    output = tmp_path / "search"
    code = tune_in_process(output, space_file(tmp_path, "SOLVER.OPTIMIZER.BASE_LRR: {uniform: [0.1, 0.2]}\n"),
                           "--trials", "1")
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == [f"error: search space {tmp_path / 'space.yaml'}: unknown config key "
                                   "SOLVER.OPTIMIZER.BASE_LRR; did you mean BASE_LR?"]
    code = tune_in_process(output, space_file(tmp_path, "SOLVER.OPTIMIZER.BASE_LR: {uniform: 0.1}\n"), "--trials", "1")
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == [f"error: search space {tmp_path / 'space.yaml'}: SOLVER.OPTIMIZER.BASE_LR: uniform "
                                   "takes [low, high], got 0.1"]
    assert not output.exists()


def test_without_optuna_the_tool_says_how_to_install_it_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    output = tmp_path / "search"
    assert tune_in_process(output, space_file(tmp_path), "--trials", "1") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: tools/tune.py needs Optuna, which is not installed: pip install -e .[tune]"]
    assert not output.exists()


# A search whose pruner stops every trial at its first report; each process notes how each trial ended.
WORKER = """
import os, sys
import optuna
sys.path.insert(0, {root!r})

class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True

optuna.pruners.MedianPruner = AlwaysPrune
from pet.engine.runs.tuning import study
run_trial = study.run_trial

def noted(cfg, number, params, metric, should_prune):
    outcome = run_trial(cfg, number, params, metric, should_prune)
    with open(os.path.join({notes!r}, "rank" + os.environ["RANK"]), "a") as f:
        f.write(f"{{number}} {{outcome.state}} {{outcome.iteration}}\\n")
    return outcome

study.run_trial = noted
from tests.tools.test_cli_errors import load_tool
tune = load_tool("tune")
sys.exit(tune.run(tune.main))
"""


@pytest.mark.slow
def test_under_torchrun_a_pruned_trial_stops_every_process_after_the_same_iteration(tmp_path):
    notes, output = tmp_path / "notes", tmp_path / "search"
    notes.mkdir()
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(root=ROOT, notes=str(notes)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
               "--cfg", DEFAULT_CFG, "--space", space_file(tmp_path), "--trials", "2", "OUTPUT_DIR", str(output),
               *TINY, "TRAIN.BATCH_SIZE", "4", "TRAIN.EVAL_PERIOD", "3", "DISTRIBUTED.TIMEOUT_S", "20"]  # a disagreement fails fast
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=120, cwd=ROOT)
    noted = {path.name: path.read_text() for path in notes.iterdir()}
    assert result.returncode == 0, (noted, result.stderr[-3000:])  # torchrun exits 0 when each process did
    for rank in (0, 1):
        assert (notes / f"rank{rank}").read_text() == "0 pruned 2\n1 pruned 2\n"
    assert [t.state.name for t in load_study(output).trials] == ["PRUNED", "PRUNED"]
    for number in (0, 1):
        assert metrics(output / f"trial_{number}")[-1]["iteration"] == 2
    assert "Traceback" not in result.stdout + result.stderr
