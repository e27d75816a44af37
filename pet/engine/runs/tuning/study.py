"""The search of tools/tune.py: an Optuna study whose trials are normal runs, each in OUTPUT_DIR/trial_<k>/ (k:
Optuna's trial number) with its own config.yaml, metrics.json and checkpoints.

Optuna does the searching (TPE) and the pruning (median of earlier trials at the same evaluation). Under torchrun
every process runs the search: rank 0 alone talks to the study (ask, report, tell) and broadcasts each trial's
values, and the pruning hook broadcasts its verdict, so every process runs the same trials and stops a pruned
one after the same iteration. The study lives in a database (OUTPUT_DIR/study.db by default): running the tool
again continues it. While a trial runs, rank 0 notes a heartbeat in the database; a trial whose process was killed
is left RUNNING without one, and the next search marks it FAIL.
"""
import contextlib
import dataclasses
import math
import os
import time
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch.distributed as dist

from pet.config import ConfigError, get_cfg, validate_cfg
from pet.engine.distributed.process_group import (get_world_size, init_distributed, is_collective_failure,
                                                  is_main_process)
from pet.engine.evaluation.tasks import task_of
from pet.engine.loop.hooks import lower_is_better
from pet.engine.persistence.output_dir import make_output_dir
from pet.engine.persistence.safe_files import atomic_write
from pet.engine.runs.cli import write_output
from pet.engine.runs.runner import shown_path, train
from pet.engine.runs.tuning.pruning import MetricMissing, Pruned, PruningHook, ShouldPrune, from_rank_0
from pet.engine.runs.tuning.space import Param, read_space, trial_config
from pet.errors import DistributedError, NonFiniteError

# Rank 0 notes in the study every HEARTBEAT_S that its trial is alive; a RUNNING trial without a note for
# GRACE_S was left by a process that stopped, and is marked FAIL.
HEARTBEAT_S = 10
GRACE_S = 30
PRUNERS = ("median", "none")
OUTPUT_FILES = ("best_config.yaml", "optimization_history.png", "param_importances.png")  # in OUTPUT_DIR
FIGURE_SIZE_IN, FIGURE_DPI = (7.0, 4.0), 90  # small PNGs: a README shows them


class TrialFailed(Exception):
    """A trial that failed on its own (its values make the config invalid, or its run diverged): the study marks
    it FAIL and the search goes on."""


@dataclasses.dataclass
class Outcome:
    """How a trial's run ended: `state` is complete, pruned or failed."""

    state: str
    seconds: float
    value: float = math.nan
    iteration: int = -1  # where a pruned run stopped
    reason: str = ""  # why a run failed


@dataclasses.dataclass
class Search:
    """What tools/tune.py asks for: the space, how many trials to run now, where the study lives, and what it
    optimises."""

    space: str  # the YAML file of the search space
    trials: int
    storage: str = ""  # "": sqlite in OUTPUT_DIR/study.db
    pruner: str = "median"
    metric: str = ""  # "": TRAIN.BEST_METRIC, else val/accuracy or val/mAP by the task
    study: str = ""  # "": OUTPUT_DIR's folder name


def import_optuna() -> Any:
    """The optuna module; its absence is one error line saying how to install it (a `ConfigError`, so that under
    torchrun only rank 0 says it)."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("tools/tune.py needs Optuna, which is not installed: pip install -e .[tune]") from None
    return optuna


def default_metric(cfg: Any) -> str:
    """TRAIN.BEST_METRIC, else the task's headline result: val/accuracy for a classifier, val/mAP for a detector."""
    return cfg.TRAIN.BEST_METRIC or ("val/mAP" if task_of(cfg).name == "detection" else "val/accuracy")


def direction_of(cfg: Any, metric: str) -> str:
    """Optuna's direction for `metric`: TRAIN.BEST_MODE where it is TRAIN.BEST_METRIC's, else from the metric's
    name as model_best decides it (lowest for a loss)."""
    if metric == cfg.TRAIN.BEST_METRIC and cfg.TRAIN.BEST_MODE:
        return "minimize" if cfg.TRAIN.BEST_MODE == "min" else "maximize"
    return "minimize" if lower_is_better(metric) else "maximize"


def default_storage(cfg: Any) -> str:
    """The study's database when --storage is not given: OUTPUT_DIR/study.db."""
    return "sqlite:///" + os.path.abspath(os.path.join(cfg.OUTPUT_DIR, "study.db"))


def run_trial(cfg: Any, number: int, params: Dict[str, Any], metric: str,
              should_prune: Optional[ShouldPrune]) -> Outcome:
    """Train `cfg` with a trial's values in OUTPUT_DIR/trial_<number>: its outcome. A trial's own failure (an
    invalid combination of values, a diverged run, a result that is not a number) is an outcome; what would
    fail every trial (`MetricMissing`, a data or distributed error, a bug) is raised."""
    start = time.monotonic()

    def failed(reason: str) -> Outcome:
        return Outcome("failed", time.monotonic() - start, reason=" ".join(reason.split())[:300])

    try:
        trial_cfg = trial_config(cfg, params, os.path.join(cfg.OUTPUT_DIR, f"trial_{number}"))
        results = train(trial_cfg, extra_hooks=(PruningHook(metric, should_prune),))
    except Pruned as stop:
        return Outcome("pruned", time.monotonic() - start, stop.value, stop.iteration)
    except MetricMissing:
        raise
    except (ConfigError, NonFiniteError) as e:
        return failed(str(e))
    if metric not in results:
        raise MetricMissing(f"--metric {metric} is not among the evaluation's results ({', '.join(results)})")
    value = float(results[metric])
    if not math.isfinite(value):
        return failed(f"{metric} = {value} is not a number")
    return Outcome("complete", time.monotonic() - start, value)


def short_names(keys: List[str]) -> Dict[str, str]:
    """Each key by its last part where that is unambiguous (BASE_LR), else in full: for one-line reports."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: name if last.count(name) == 1 else key for key, name in zip(keys, last)}


def shown_value(value: Any) -> str:
    """A parameter's value, short."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def progress_line(number: int, params: Dict[str, Any], metric: str, outcome: Outcome) -> str:
    """One line per trial: its number, values, result (value, pruned or failed) and time."""
    names = short_names(list(params))
    values = ", ".join(f"{names[key]}={shown_value(value)}" for key, value in params.items())
    if outcome.state == "complete":
        result = f"{metric} = {outcome.value:.6g}"
    elif outcome.state == "pruned":
        result = f"pruned after the evaluation at iteration {outcome.iteration} ({metric} = {outcome.value:.6g})"
    else:
        result = f"failed: {outcome.reason}"
    return f"tune: trial {number}: {values} -> {result} ({outcome.seconds:.1f} s)"


def say(line: str) -> None:
    """A progress line of the search on stdout, at once (a trial's run logs many lines in between)."""
    print(line, flush=True)


def open_study(optuna: Any, cfg: Any, search: Search, metric: str) -> Any:
    """The study (created, or loaded to continue), with a heartbeat on its trials and a sampler seeded from SEED
    and the trials so far (a continued search draws new values, not the first search's again). A storage that
    cannot be opened, or a study that optimises another metric, is a `ConfigError`."""
    import sqlalchemy.exc

    url = search.storage or default_storage(cfg)
    name = search.study or os.path.basename(os.path.normpath(cfg.OUTPUT_DIR))
    direction = direction_of(cfg, metric)
    pruner = optuna.pruners.MedianPruner() if search.pruner == "median" else optuna.pruners.NopPruner()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        study = optuna.create_study(storage=storage, study_name=name, direction=direction, pruner=pruner,
                                    load_if_exists=True)
    except (ValueError, ImportError, sqlalchemy.exc.SQLAlchemyError) as e:
        raise ConfigError(f"--storage {url}: cannot open the study {name!r}: {' '.join(str(e).split())[:300]}") \
            from None
    known = study.user_attrs.get("metric")
    if (known or metric) != metric or study.direction.name.lower() != direction:
        raise ConfigError(f"the study {name!r} in {url} optimises {known or 'another metric'} "
                          f"({study.direction.name.lower()}), not {metric} ({direction}); give --study NAME for a new "
                          "study")
    if known is None:
        study.set_user_attr("metric", metric)  # what a continued search checks against
    study.sampler = optuna.samplers.TPESampler(seed=cfg.SEED + len(study.trials))
    return study


def fail_stale_trials(optuna: Any, study: Any) -> None:
    """Mark FAIL the trials left RUNNING by a process that stopped (no heartbeat for GRACE_S), and say so; say too
    which RUNNING trials still have a recent heartbeat (another search, or one stopped less than GRACE_S ago)."""
    running = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    if not running:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    for number in running:
        if states[number] == optuna.trial.TrialState.FAIL:
            say(f"tune: trial {number} was left running by a process that stopped: marked FAIL")
        else:
            say(f"tune: trial {number} is running elsewhere, or its process stopped less than {GRACE_S} s ago: "
                f"it is marked FAIL once its heartbeat is {GRACE_S} s old")


def lead(optuna: Any, cfg: Any, search: Search, space: List[Param], metric: str) -> Any:
    """Rank 0's search: open the study, tell the other processes to start (or why not), run the trials, tell them
    to stop; return the study."""
    try:
        study = open_study(optuna, cfg, search, metric)
    except ConfigError as e:
        from_rank_0(("error", str(e)))
        raise
    from_rank_0(("start", None))
    fail_stale_trials(optuna, study)
    where = search.storage or shown_path(os.path.join(cfg.OUTPUT_DIR, "study.db"))
    say(f"tune: study {study.study_name!r} in {where}: {len(study.trials)} trials so far; {search.trials} more, "
        f"{study.direction.name.lower()} {metric}, pruner {search.pruner}")
    if search.pruner == "median" and cfg.TRAIN.EVAL_PERIOD == 0:
        say("tune: TRAIN.EVAL_PERIOD is 0: the runs evaluate only at their end, so no trial can be pruned; set it "
            "to evaluate mid-run")

    def objective(trial: Any) -> float:
        params = {param.key: param.suggest(trial) for param in space}
        from_rank_0(("trial", (trial.number, params)))

        def should_prune(value: float, iteration: int) -> bool:
            trial.report(value, step=iteration)
            return trial.should_prune()

        outcome = run_trial(cfg, trial.number, params, metric, should_prune)
        say(progress_line(trial.number, params, metric, outcome))
        if outcome.state == "pruned":
            raise optuna.TrialPruned(f"at iteration {outcome.iteration}")
        if outcome.state == "failed":
            raise TrialFailed(outcome.reason)
        return outcome.value

    study.optimize(objective, n_trials=search.trials, catch=(TrialFailed,))
    from_rank_0(("done", None))
    return study


def follow(cfg: Any, metric: str) -> None:
    """Another process's search: run the trials rank 0 sends, until it says it is done. Rank 0 stopping on the
    way is a `DistributedError`."""
    while True:
        with rank_0_may_stop():
            kind, body = from_rank_0(None)
        if kind == "error":
            raise ConfigError(body)
        if kind == "done":
            return
        if kind == "trial":
            number, params = body
            run_trial(cfg, number, params, metric, None)


@contextlib.contextmanager
def rank_0_may_stop() -> Iterator[None]:
    """Around another process's wait for rank 0: rank 0 stopping on its own error (its line says why) makes the
    wait fail; that is a `DistributedError` here, not a traceback."""
    try:
        yield
    except RuntimeError as e:
        if not is_collective_failure(e):
            raise
        raise DistributedError("process 0 stopped the search (its error says why)") from None


def leave_together() -> None:
    """Return once every process is done: rank 0 writes the results after the last trial, and no process tears
    its group down while another still uses it (gloo has aborted such a process)."""
    if get_world_size() > 1:
        with rank_0_may_stop():
            dist.barrier()


def write_results(optuna: Any, cfg: Any, study: Any) -> None:
    """OUTPUT_DIR/best_config.yaml (the best trial's config, with OUTPUT_DIR/best as its own output folder), and
    the optimisation history and parameter importances as PNGs; each thing that cannot be made is one line."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in optuna.trial.TrialState}
    say(f"tune: {len(study.trials)} trials: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed")
    if not complete:
        say("tune: no trial has completed yet: no best_config.yaml and no plots")
        return
    best = study.best_trial
    path = os.path.join(cfg.OUTPUT_DIR, "best_config.yaml")
    atomic_write(path, lambda f: f.write(best_config(cfg, best.number, best.params).dump().encode()))
    names = short_names(list(best.params))
    say(f"tune: best trial {best.number}: {study.user_attrs.get('metric')} = {best.value:.6g} with "
        f"{', '.join(f'{names[k]}={shown_value(v)}' for k, v in best.params.items())}; train it with: "
        f"python tools/train_net.py --cfg {shown_path(path)}")
    plot_results(optuna, cfg, study, len(complete))


def best_config(cfg: Any, number: int, params: Dict[str, Any]) -> Any:
    """The best trial's merged config as its run wrote it (rebuilt from `cfg` and its values where its folder is
    not here: a study shared between machines), with OUTPUT_DIR/best as the output folder of a run of it."""
    written = os.path.join(cfg.OUTPUT_DIR, f"trial_{number}", "config.yaml")
    best = get_cfg()
    if os.path.isfile(written):
        best.merge_from_file(written)
    else:
        say(f"tune: {shown_path(written)} is not here: best_config.yaml is this config with the trial's values")
        best = trial_config(cfg, params, cfg.OUTPUT_DIR)
    best.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, "best")
    validate_cfg(best)
    return best


def plot_results(optuna: Any, cfg: Any, study: Any, complete: int) -> None:
    """The optimisation history, and the parameter importances where there are two completed trials and two
    parameters to compare, as PNGs in OUTPUT_DIR (Matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    wanted: List[Tuple[str, Any]] = [("optimization_history.png", plots.plot_optimization_history)]
    params = {name for trial in study.get_trials(deepcopy=False) for name in trial.params}
    if complete >= 2 and len(params) >= 2:
        wanted.append(("param_importances.png", plots.plot_param_importances))
    else:
        say(f"tune: no param_importances.png: it needs 2 completed trials and 2 parameters ({complete} and "
            f"{len(params)} so far)")
    for name, plot in wanted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # Optuna's Matplotlib plots
            try:
                axes = plot(study, target_name=study.user_attrs.get("metric", "value"))
            except (ValueError, RuntimeError) as e:  # an importance evaluator that cannot fit these trials
                say(f"tune: no {name}: {' '.join(str(e).split())[:200]}")
                continue
        figure = axes.figure
        figure.set_size_inches(*FIGURE_SIZE_IN)
        figure.tight_layout()
        path = os.path.join(cfg.OUTPUT_DIR, name)
        write_output(path, lambda f: figure.savefig(f, format="png", dpi=FIGURE_DPI), "OUTPUT_DIR")
        plt.close(figure)
        say(f"tune: wrote {shown_path(path)}")


def tune(cfg: Any, search: Search) -> None:
    """Run `search.trials` trials of `cfg` and, on rank 0, write the best config and the plots. The config and the
    space are checked first, before anything is written. Every process of a torchrun launch calls this."""
    optuna = import_optuna()
    validate_cfg(cfg.clone())  # a bad config is reported as itself, not as every value of the space failing
    space = read_space(search.space, cfg)
    metric = search.metric or default_metric(cfg)
    init_distributed(cfg.DISTRIBUTED.TIMEOUT_S)  # the processes meet once, for the whole search
    if is_main_process():
        make_output_dir(cfg.OUTPUT_DIR)
        with quiet(optuna):
            study = lead(optuna, cfg, search, space, metric)
            write_results(optuna, cfg, study)
    else:
        follow(cfg, metric)
    leave_together()


@contextlib.contextmanager
def quiet(optuna: Any) -> Iterator[None]:
    """Optuna's log at ERROR only, then as it was: each trial has its own line here, which Optuna's would repeat
    (with the traceback of each failed trial)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
