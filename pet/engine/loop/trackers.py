"""The experiment trackers TRAIN.LOGGERS names: TensorBoard, MLflow and Weights & Biases (offline).

Each is an `EventWriter`: at every write it gets the scalars metrics.json gets (losses, the lr of every group,
gradient norms, evaluations, time), by the same `_updated_since`, at the same iterations. MLflow and W&B also get
the merged config (MLflow: flattened params such as `SOLVER.OPTIMIZER.BASE_LR`; W&B: the config tree) and, when
training reaches its last iteration, model_final and config.yaml as artifacts. Only rank 0 builds writers.

A resume continues the same tracker run: its id is kept in OUTPUT_DIR (`mlflow_run_id`, `wandb_run_id`). Metrics
of the iterations from the resumed checkpoint on that a killed run had already sent are sent again; metrics.json
drops its own such lines, but a tracker keeps both (MLflow's history holds two values at such a step, the later
one the resumed run's). A run that starts at iteration 0 always starts a new tracker run.

MLflow and W&B are optional extras (`pip install -e .[mlflow]`, `.[wandb]`): `check_trackers` refuses a config
that names a missing one before anything is written. Nothing either writes leaves OUTPUT_DIR (with the default
MLflow store), and W&B never goes online.
"""
import importlib
import logging
import os
import re
import time
from typing import Any, Dict, Iterable, List, Optional

from pet.config.node import shown
from pet.engine.loop.events import EventStorage
from pet.engine.loop.writers import EventWriter, JSONWriter, TensorboardWriter, _updated_since
from pet.engine.persistence.safe_files import atomic_write, no_follow, safe_output_path
from pet.errors import ConfigError

logger = logging.getLogger(__name__)

MLFLOW_DB, MLFLOW_ARTIFACTS, MLFLOW_RUN_ID = "mlflow.db", "mlartifacts", "mlflow_run_id"
WANDB_DIR, WANDB_RUN_ID = "wandb", "wandb_run_id"
DEFAULT_PROJECT = "pet-solver"  # the MLflow experiment and W&B project unless MLFLOW_EXPERIMENT_NAME / WANDB_PROJECT
ARTIFACTS = ("model_final.pth", "model_final", "config.yaml")  # a `.pth` file, or an FSDP run's folder
RUN_ID = re.compile(r"^[\w-]{1,64}$")  # what MLflow (hex) and W&B (letters, digits, - and _) make
MLFLOW_BATCH = 1000  # metrics per `log_batch`, MLflow's limit
MLFLOW_PARAMS_BATCH = 100  # params per `log_batch`, MLflow's limit


def _required_modules(cfg: Any) -> Dict[str, List[str]]:
    """The modules each tracker of TRAIN.LOGGERS imports. The default MLflow store is SQLite, which mlflow-skinny
    opens only with SQLAlchemy and Alembic (the `mlflow` extra has them)."""
    mlflow = ["mlflow"] + ([] if cfg.TRAIN.MLFLOW_URI else ["sqlalchemy", "alembic"])
    return {"mlflow": mlflow, "wandb": ["wandb"]}


def _mlflow_defaults() -> None:
    """No MLflow usage telemetry: it sends events over the network and writes ~/.config/mlflow, outside
    OUTPUT_DIR (an explicit MLFLOW_DISABLE_TELEMETRY of the user's stays). Read when mlflow is imported."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def check_trackers(cfg: Any) -> None:
    """A one-line `ConfigError` when TRAIN.LOGGERS names a tracker whose package cannot be imported, naming the
    extra to install. Called by every process before the output folder is touched, so that all of them stop."""
    if "mlflow" in cfg.TRAIN.LOGGERS:
        _mlflow_defaults()
    needed = _required_modules(cfg)
    for name in cfg.TRAIN.LOGGERS:
        for module in needed.get(name, []):
            try:
                importlib.import_module(module)
            except ImportError as e:
                why = "is not installed" if isinstance(e, ModuleNotFoundError) and e.name == module \
                    else f"cannot be imported ({' '.join(str(e).split())})"
                store = " for the SQLite store of TRAIN.MLFLOW_URI = \"\"" if module != name else ""
                raise ConfigError(f"TRAIN.LOGGERS = {shown(tuple(cfg.TRAIN.LOGGERS))} names {name}, whose package "
                                  f"{module}{store} {why}: pip install -e .[{name}]") from None


def build_trackers(cfg: Any, start_iter: int, max_iter: int) -> List[EventWriter]:
    """The writers of TRAIN.LOGGERS, in its order (rank 0 only). A run with nothing left to train never closes its
    writers, so it opens no MLflow or W&B run (it would stay `RUNNING`)."""
    output_dir, writers = cfg.OUTPUT_DIR, []
    for name in cfg.TRAIN.LOGGERS:
        if name == "tensorboard":
            writers.append(TensorboardWriter(output_dir, start_iter))
        elif start_iter >= max_iter:
            continue
        elif name == "mlflow":
            writers.append(MLflowWriter(output_dir, cfg, cfg.TRAIN.MLFLOW_URI, start_iter, max_iter))
        elif name == "wandb":
            writers.append(WandbWriter(output_dir, cfg, start_iter, max_iter))
    return writers


def written_outputs(hooks: Iterable[Any]) -> str:
    """What the writers of the trainer's hooks wrote, for the run's last log line: `metrics.json, TensorBoard
    events, MLflow run ...` (the console writer writes no file)."""
    parts = []
    for hook in hooks:
        for writer in getattr(hook, "writers", []):  # `PeriodicWriter`
            if isinstance(writer, JSONWriter):
                parts.append(os.path.basename(writer.path))
            elif isinstance(writer, TensorboardWriter):
                parts.append("TensorBoard events")
            elif isinstance(writer, (MLflowWriter, WandbWriter)):
                parts.append(writer.description)
    return ", ".join(parts)


def plain_config(node: Any) -> Any:
    """The config as plain dicts, lists and scalars (W&B's config; tuples become lists there anyway)."""
    if isinstance(node, dict):
        return {key: plain_config(value) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain_config(value) for value in node]
    return node


def flat_config(node: Any, prefix: str = "") -> Dict[str, Any]:
    """`{"SOLVER.OPTIMIZER.BASE_LR": 0.001, ...}`: every leaf of the config under its full key (named optimizers'
    entries included)."""
    flat: Dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _stored_run_id(path: str) -> Optional[str]:
    """The tracker run id a previous process of this run kept at `path`, or None (none kept, or not an id)."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace", opener=no_follow) as f:
        run_id = f.read().strip()
    if not RUN_ID.match(run_id):
        logger.warning("%s holds no run id (%s): starting a new tracker run", path, shown(run_id, 80))
        return None
    return run_id


def _keep_run_id(path: str, run_id: str) -> None:
    """Keep `run_id` at `path`, for a resume to continue the run."""
    atomic_write(path, lambda f: f.write(f"{run_id}\n".encode()))


def _finished_outputs(output_dir: str) -> List[str]:
    """The paths of ARTIFACTS that exist in `output_dir`."""
    return [os.path.join(output_dir, name) for name in ARTIFACTS if os.path.exists(os.path.join(output_dir, name))]


class MLflowWriter:
    """Logs every scalar as an MLflow metric (step = iteration) into one run, with the flattened config as its
    params; at the end of training, model_final and config.yaml as artifacts.

    `uri` "" is a SQLite store in OUTPUT_DIR (`mlflow.db`, artifacts in `mlartifacts/`, experiment `pet-solver`);
    else any tracking URI MLflow takes, into the experiment MLFLOW_EXPERIMENT_NAME (default `pet-solver`). The run
    is `FINISHED` when training reached its last iteration, else `KILLED` (a resume sets it `RUNNING` again).
    """

    def __init__(self, output_dir: str, cfg: Any, uri: str, start_iter: int, max_iter: int) -> None:
        _mlflow_defaults()
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.output_dir, self.max_iter = output_dir, max_iter
        self._last_iter = start_iter - 1
        local = not uri
        if local:
            if not os.path.exists(safe_output_path(output_dir, MLFLOW_DB)):
                logger.info("MLflow: creating its store %s (a few seconds)", MLFLOW_DB)
            safe_output_path(output_dir, MLFLOW_ARTIFACTS, folder_too=True)
        self.uri = uri or "sqlite:///" + os.path.abspath(os.path.join(output_dir, MLFLOW_DB))
        id_path = safe_output_path(output_dir, MLFLOW_RUN_ID)
        try:
            self._client = MlflowClient(self.uri)
            self.run_id = self._open_run(id_path, cfg, start_iter, local)
        except (MlflowException, OSError) as e:
            first = " ".join(str(e).split())[:300]
            where = f"{uri!r}" if uri else f"\"\" ({self.uri})"
            raise ConfigError(f"TRAIN.MLFLOW_URI = {where}: MLflow cannot keep the run there: {first}") from None
        self.description = f"MLflow run {self.run_id} ({MLFLOW_DB})" if local else f"MLflow run {self.run_id} at {uri}"

    def _open_run(self, id_path: str, cfg: Any, start_iter: int, local: bool) -> str:
        """The run this one continues (its id kept at `id_path`, when resuming from a checkpoint), else a new one
        with the config as its params; its id is kept at `id_path`."""
        from mlflow.exceptions import MlflowException

        client = self._client
        run_id = _stored_run_id(id_path) if start_iter > 0 else None
        if run_id is not None:
            try:
                client.get_run(run_id)
            except MlflowException:
                logger.warning("MLflow run %s of %s is not in %s: starting a new run, from iteration %d", run_id,
                               id_path, self.uri, start_iter)
                run_id = None
        if run_id is None:
            if start_iter > 0:
                logger.info("MLflow: a new run for a run resumed at iteration %d; its metrics start there",
                            start_iter)
            experiment_id = self._experiment(local)
            run = client.create_run(experiment_id, run_name=os.path.basename(os.path.abspath(self.output_dir)),
                                    tags={"pet.output_dir": os.path.abspath(self.output_dir)})
            run_id = run.info.run_id
            _keep_run_id(id_path, run_id)
            logged: Dict[str, str] = {}
        else:
            client.update_run(run_id, status="RUNNING")
            logged = client.get_run(run_id).data.params
            logger.info("MLflow: continuing run %s at iteration %d", run_id, start_iter)
        self._log_params(run_id, logged, flat_config(cfg))
        return run_id

    def _experiment(self, local: bool) -> str:
        """The id of the experiment runs go to, created where missing: in the default store with its artifacts
        in OUTPUT_DIR (MLflow's default for a SQLite store is ./mlruns of the working directory)."""
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
        experiment = self._client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = "file://" + os.path.abspath(os.path.join(self.output_dir, MLFLOW_ARTIFACTS)) if local else None
        return self._client.create_experiment(name, artifact_location=location)

    def _log_params(self, run_id: str, logged: Dict[str, str], config: Dict[str, Any]) -> None:
        """The config's keys as params. MLflow keeps a param's first value: a resumed run whose config changed a
        key says so once (its config.yaml, logged at the end, has the new values)."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        values = {key: str(value)[:MAX_PARAM_VAL_LENGTH] for key, value in config.items()}
        changed = [f"{key} ({logged[key]} -> {value})" for key, value in values.items()
                   if key in logged and logged[key] != value]
        if changed:
            logger.warning("MLflow keeps the params run %s started with; changed since: %s", run_id,
                           ", ".join(changed))
        params = [Param(key, value) for key, value in values.items() if key not in logged]
        for start in range(0, len(params), MLFLOW_PARAMS_BATCH):
            self._client.log_batch(run_id, params=params[start:start + MLFLOW_PARAMS_BATCH])

    def write(self, storage: EventStorage) -> None:
        """The scalars recorded since the last write, each at its own iteration as the step."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(metric_name(name), value, now, iteration)
                   for iteration, values in sorted(_updated_since(storage, self._last_iter).items())
                   for name, value in values.items()]
        for start in range(0, len(metrics), MLFLOW_BATCH):
            self._client.log_batch(self.run_id, metrics=metrics[start:start + MLFLOW_BATCH])
        self._last_iter = storage.iter

    def close(self) -> None:
        """At the end of training: the artifacts and `FINISHED`; a run stopped before its last iteration is
        `KILLED` and gets no artifacts (its resume will)."""
        finished = self._last_iter >= self.max_iter - 1
        if finished:
            for path in _finished_outputs(self.output_dir):
                if os.path.isdir(path):  # an FSDP checkpoint folder
                    self._client.log_artifacts(self.run_id, path, artifact_path=os.path.basename(path))
                else:
                    self._client.log_artifact(self.run_id, path)
        self._client.set_terminated(self.run_id, "FINISHED" if finished else "KILLED")


def metric_name(name: str) -> str:
    """`name` with the characters MLflow refuses in a metric name (all but letters, digits, `_ - . / :` and
    spaces) as `_`: a group label of the user's own must not stop the run."""
    return re.sub(r"[^\w\-./: ]", "_", name)


class WandbWriter:
    """Logs every scalar to an offline Weights & Biases run in OUTPUT_DIR/wandb/ (`wandb sync` uploads it), with
    `iteration` as the x-axis of every chart, and the config as its config; at the end of training, model_final
    and config.yaml as the artifact `model-<run id>` (referenced in place, not copied: sync before moving them).

    W&B never goes online from here, and writes nothing outside OUTPUT_DIR: its folders (run, cache, config, data)
    are set under OUTPUT_DIR/wandb while the writer is open. W&B 0.31 does not resume a run offline: each process
    of a run (the first and each resume) writes its own `offline-run-<time>-<id>` folder under the same run id,
    the later one holding the iterations from its checkpoint on.
    """

    def __init__(self, output_dir: str, cfg: Any, start_iter: int, max_iter: int) -> None:
        self.output_dir, self.max_iter = output_dir, max_iter
        self._last_iter = start_iter - 1
        folder = safe_output_path(output_dir, WANDB_DIR, folder_too=True)
        id_path = safe_output_path(output_dir, WANDB_RUN_ID)
        self._saved_env = self._set_environment(folder)
        try:
            import wandb

            run_id = _stored_run_id(id_path) if start_iter > 0 else None
            self._run = wandb.init(mode="offline", dir=output_dir, id=run_id, resume="allow" if run_id else None,
                                   project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                                   name=os.path.basename(os.path.abspath(output_dir)), config=plain_config(cfg),
                                   settings=wandb.Settings(console="off", silent=True))
        except BaseException:
            self._restore_environment()
            raise
        if run_id is None:
            _keep_run_id(id_path, self._run.id)
        self._run.define_metric("iteration")
        self._run.define_metric("*", step_metric="iteration")  # W&B's own step counts logs, per process
        self.description = f"W&B offline run {self._run.id} ({WANDB_DIR}/, `wandb sync` uploads it)"

    @staticmethod
    def _set_environment(folder: str) -> Dict[str, Optional[str]]:
        """Point every folder W&B writes to under `folder`, offline and silent; return what was there before.
        The settings W&B reads from the environment only (its cache, config and data folders) cannot be passed
        to `wandb.init`."""
        values = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": os.path.dirname(folder) or ".",
                  "WANDB_CACHE_DIR": os.path.join(folder, "cache"),
                  "WANDB_CONFIG_DIR": os.path.join(folder, "config"),
                  "WANDB_DATA_DIR": os.path.join(folder, "data")}
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        return saved

    def _restore_environment(self) -> None:
        """The W&B variables as they were before this writer."""
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def write(self, storage: EventStorage) -> None:
        """One W&B history row per iteration with new scalars, `iteration` in it."""
        for iteration, values in sorted(_updated_since(storage, self._last_iter).items()):
            self._run.log({"iteration": iteration, **values})
        self._last_iter = storage.iter

    def close(self) -> None:
        """The artifact when training reached its last iteration; finish the run (exit code 1 when stopped
        before), stop W&B's service process and restore the environment."""
        import wandb

        finished = self._last_iter >= self.max_iter - 1
        try:
            outputs = _finished_outputs(self.output_dir) if finished else []
            if outputs:
                artifact = wandb.Artifact(f"model-{self._run.id}", type="model")
                for path in outputs:
                    if os.path.isdir(path):  # an FSDP checkpoint folder
                        artifact.add_dir(path, name=os.path.basename(path), policy="immutable")
                    else:
                        artifact.add_file(path, policy="immutable")
                self._run.log_artifact(artifact)
            self._run.finish(exit_code=0 if finished else 1)
            wandb.teardown()  # its service process would keep this run's folders for the next run of this process
        finally:
            self._restore_environment()
