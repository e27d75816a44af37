"""TRAIN.LOGGERS: MLflow and offline W&B get what metrics.json gets, step by step, read back through each library's
own API; the config as params / config, model_final and config.yaml as artifacts; a resume continues the same
tracker run; a missing package is one error line with nothing written; nothing lands outside OUTPUT_DIR."""
import glob
import json
import os
import struct
import sys

import pytest
import yaml

from tests.engine.runs.test_runner import back_to_iteration_4, train_in_process

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # as the writer does: importing mlflow would write ~/.config
mlflow = pytest.importorskip("mlflow")
wandb = pytest.importorskip("wandb")


def metrics_rows(folder):
    """metrics.json, written by the independent JSONWriter: the oracle."""
    return [json.loads(line) for line in open(folder / "metrics.json", encoding="utf-8")]


def series(rows):
    """name -> [(iteration, value), ...] of metrics.json's rows."""
    found = {}
    for row in rows:
        for name, value in row.items():
            if name != "iteration":
                found.setdefault(name, []).append((row["iteration"], value))
    return found


@pytest.fixture
def sealed(tmp_path, monkeypatch):
    """A home and a working directory that a run must leave empty: everything goes to OUTPUT_DIR."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(home))
    monkeypatch.chdir(cwd)
    yield tmp_path / "out"
    assert list(home.iterdir()) == [] and list(cwd.iterdir()) == []


def mlflow_client(folder):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def run_id_of(folder, tracker):
    return (folder / f"{tracker}_run_id").read_text().strip()


@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory):
    """One whole run of 8 updates with TRAIN.LOGGERS ('mlflow',), into the default store in OUTPUT_DIR."""
    folder = tmp_path_factory.mktemp("mlflow") / "out"
    assert train_in_process(folder, "TRAIN.LOGGERS", "('mlflow',)") == 0
    return folder


def test_mlflow_metrics_are_those_of_metrics_json_step_by_step(mlflow_run):
    from pet.engine.loop.trackers import metric_name

    client, run_id = mlflow_client(mlflow_run), run_id_of(mlflow_run, "mlflow")
    expected = series(metrics_rows(mlflow_run))
    assert {"loss", "lr", "lr/bias+norm", "time", "val/accuracy"} <= set(expected)
    for name, points in expected.items():
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, metric_name(name))] == points, name
    logged = set(client.get_run(run_id).data.metrics)
    assert logged == {metric_name(name) for name in expected} and "lr/bias_norm" in logged  # MLflow refuses '+'


def test_mlflow_params_are_the_flattened_merged_config(mlflow_run):
    from pet.engine.loop.trackers import flat_config

    params = mlflow_client(mlflow_run).get_run(run_id_of(mlflow_run, "mlflow")).data.params
    config = yaml.safe_load(open(mlflow_run / "config.yaml", encoding="utf-8"))
    assert params["SOLVER.OPTIMIZER.BASE_LR"] == str(config["SOLVER"]["OPTIMIZER"]["BASE_LR"]) == "0.05"
    assert params["TRAIN.LOGGERS"] == "('mlflow',)" and params["SOLVER.SCHEDULER.TOTAL_ITERS"] == "8"
    assert params["MODEL.NAME"] == "tests.user_builders:tiny_net" and params["TRAIN.MLFLOW_URI"] == ""
    assert set(params) == set(flat_config(config))


def test_mlflow_artifacts_are_model_final_and_config_yaml_kept_in_output_dir(mlflow_run):
    client, run_id = mlflow_client(mlflow_run), run_id_of(mlflow_run, "mlflow")
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["config.yaml", "model_final.pth"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith(f"file://{mlflow_run}/mlartifacts/")
    local = client.download_artifacts(run_id, "model_final.pth", str(mlflow_run.parent))
    assert open(local, "rb").read() == (mlflow_run / "model_final.pth").read_bytes()


def test_a_run_stopped_early_is_killed_without_artifacts_and_its_resume_finishes_it(mlflow_run, tmp_path,
                                                                                     monkeypatch, caplog):
    """The writer alone, into the store of the whole run above given as TRAIN.MLFLOW_URI (no new store to make)."""
    from pet.config import get_cfg
    from pet.engine.loop.events import EventStorage
    from pet.engine.loop.trackers import MLflowWriter

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "stopped")
    uri, folder, cfg = f"sqlite:///{mlflow_run / 'mlflow.db'}", tmp_path / "out", get_cfg()
    folder.mkdir()
    # With a URI of the user's, artifacts go where its experiment says (MLflow's default: ./mlruns)
    mlflow_client(mlflow_run).create_experiment("stopped", artifact_location=f"file://{tmp_path}/artifacts")

    def train(start, stop, writer):
        storage = EventStorage(start)
        for storage.iter in range(start, stop):
            storage.put_scalars(loss=1.0 / (storage.iter + 1))
            writer.write(storage)
        writer.close()

    train(0, 3, MLflowWriter(str(folder), cfg, uri, 0, 8))  # stopped after iteration 2 of 8
    client, run_id = mlflow_client(mlflow_run), run_id_of(folder, "mlflow")
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and client.list_artifacts(run_id) == []
    assert client.get_experiment(run.info.experiment_id).name == "stopped"
    for name in ("config.yaml", "model_final.pth"):
        (folder / name).write_text(name)
    cfg.SOLVER.OPTIMIZER.BASE_LR = 0.5
    with caplog.at_level("WARNING", logger="pet.engine.loop.trackers"):
        writer = MLflowWriter(str(folder), cfg, uri, 3, 8)
    assert writer.run_id == run_id and client.get_run(run_id).info.status == "RUNNING"
    assert "SOLVER.OPTIMIZER.BASE_LR (0.001 -> 0.5)" in caplog.text  # MLflow keeps a param's first value
    train(3, 8, writer)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["config.yaml", "model_final.pth"]
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(8))


def test_a_resume_continues_the_same_mlflow_run(sealed):
    folder = sealed
    assert train_in_process(folder, "TRAIN.LOGGERS", "('mlflow',)") == 0
    run_id = run_id_of(folder, "mlflow")
    back_to_iteration_4(folder)
    assert train_in_process(folder, "--resume", "TRAIN.LOGGERS", "('mlflow',)") == 0
    assert run_id_of(folder, "mlflow") == run_id
    client = mlflow_client(folder)
    (run,) = client.search_runs([client.get_experiment_by_name("pet-solver").experiment_id])
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "loss")
    # MLflow keeps history: steps 4-7 of the first process, then again from the resumed one
    assert [m.step for m in history] == [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7]
    latest = {m.step: m.value for m in history}  # in logging order: the resumed run's values win
    assert sorted(latest.items()) == series(metrics_rows(folder))["loss"]


def test_a_new_run_in_the_same_folder_starts_a_new_mlflow_run(tmp_path):
    folder = tmp_path / "out"
    assert train_in_process(folder, "TRAIN.LOGGERS", "('mlflow',)", "SOLVER.SCHEDULER.TOTAL_ITERS", "2",
                            "SOLVER.SCHEDULER.STEPS", "(1,)", "SOLVER.SCHEDULER.WARM_UP_ITERS", "0") == 0
    first = run_id_of(folder, "mlflow")
    assert train_in_process(folder, "TRAIN.LOGGERS", "('mlflow',)", "SOLVER.SCHEDULER.TOTAL_ITERS", "2",
                            "SOLVER.SCHEDULER.STEPS", "(1,)", "SOLVER.SCHEDULER.WARM_UP_ITERS", "0") == 0
    second = run_id_of(folder, "mlflow")
    assert second != first
    assert [m.step for m in mlflow_client(folder).get_metric_history(second, "loss")] == [0, 1]


BLOCK = 32768  # the .wandb file is a LevelDB-style log of protobuf records in 32 KiB blocks


def wandb_records(path):
    """The records of an offline run's `.wandb` file, parsed with W&B's own protobuf classes (W&B 0.31 has no
    Python reader for it any more: the format is a 7-byte header, then chunks of checksum, length and type)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    records, position, pending = [], 7, b""
    while position + 7 <= len(data):
        left = BLOCK - position % BLOCK
        if left < 7:  # the rest of a block is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:
            position += left
            continue
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def offline_runs(folder):
    """(run id, records) of each offline run folder, oldest first (by start time: two processes that start in the
    same second make `offline-run-<time>-<id>` and `...-<id>-1`, which sort the other way round)."""
    found = []
    for path in glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb")):
        records = wandb_records(path)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        found.append((run.start_time.ToNanoseconds(), run.run_id, records))
    return [(run_id, records) for _, run_id, records in sorted(found, key=lambda item: item[0])]


def wandb_history(records):
    """metrics.json-style rows of the history records, W&B's own keys (`_step`, `_runtime`, ...) left out."""
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            rows.append({key: value for key, value in row.items() if not key.startswith("_")})
    return rows


def test_wandb_offline_run_holds_the_metrics_config_and_artifact_and_only_in_output_dir(sealed):
    folder = sealed
    assert train_in_process(folder, "TRAIN.LOGGERS", "('wandb',)") == 0
    assert not [key for key in os.environ if key.startswith("WANDB_")]  # the writer's settings are undone
    ((run_id, records),) = offline_runs(folder)
    assert run_id == run_id_of(folder, "wandb")
    assert wandb_history(records) == metrics_rows(folder)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["SOLVER"]["OPTIMIZER"]["BASE_LR"] == 0.05 and config["TRAIN"]["LOGGERS"] == ["wandb"]
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert artifact.name == f"model-{run_id}" and artifact.type == "model"
    assert sorted((e.path, e.local_path) for e in artifact.manifest.contents) == [
        ("config.yaml", str(folder / "config.yaml")), ("model_final.pth", str(folder / "model_final.pth"))]
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 0
    assert not glob.glob(str(folder / "events.out.*"))  # TRAIN.LOGGERS names no tensorboard


def test_a_resume_continues_the_same_wandb_run(tmp_path):
    folder = tmp_path / "out"
    assert train_in_process(folder, "TRAIN.LOGGERS", "('wandb',)") == 0
    run_id = run_id_of(folder, "wandb")
    back_to_iteration_4(folder)
    assert train_in_process(folder, "--resume", "TRAIN.LOGGERS", "('wandb',)") == 0
    (first_id, first), (second_id, second) = offline_runs(folder)
    assert first_id == second_id == run_id_of(folder, "wandb") == run_id
    rows = metrics_rows(folder)
    assert [row["iteration"] for row in wandb_history(first)] == list(range(8))
    assert wandb_history(second) == rows[4:]  # the resumed process sends its iterations, 4 on


@pytest.mark.parametrize("logger, module, message", [
    ("mlflow", "mlflow", "TRAIN.LOGGERS = ('mlflow',) names mlflow, whose package mlflow is not installed: "
                         "pip install -e .[mlflow]"),
    ("mlflow", "sqlalchemy", "TRAIN.LOGGERS = ('mlflow',) names mlflow, whose package sqlalchemy for the SQLite "
                             "store of TRAIN.MLFLOW_URI = \"\" is not installed: pip install -e .[mlflow]"),
    ("wandb", "wandb", "TRAIN.LOGGERS = ('wandb',) names wandb, whose package wandb is not installed: "
                       "pip install -e .[wandb]"),
])
def test_a_tracker_that_is_not_installed_is_one_error_line_and_nothing_is_written(tmp_path, monkeypatch, capsys,
                                                                                  logger, module, message):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` sees of a package that is not there
    assert train_in_process(tmp_path / "out", "TRAIN.LOGGERS", f"('{logger}',)") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {message}"]
    assert not (tmp_path / "out").exists()


def test_without_tensorboard_in_loggers_no_event_file_is_written_and_the_last_line_says_what_was(tmp_path, capsys):
    assert train_in_process(tmp_path / "off", "TRAIN.LOGGERS", "()") == 0
    assert not glob.glob(str(tmp_path / "off" / "events.out.*")) and (tmp_path / "off" / "metrics.json").exists()
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "Outputs in" in line]
    assert line.endswith(": checkpoints (model_final.pth), metrics.json, log.txt")
    assert train_in_process(tmp_path / "on") == 0  # the default, ('tensorboard',)
    assert glob.glob(str(tmp_path / "on" / "events.out.*"))
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "Outputs in" in line]
    assert line.endswith(": checkpoints (model_final.pth), metrics.json, TensorBoard events, log.txt")
