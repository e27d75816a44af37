"""Event writers: console line with ETA, metrics.json history (trimmed on resume), readable TensorBoard files."""
import json
import os
import logging

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pet.engine.loop.events import EventStorage
from pet.engine.loop.writers import ConsoleWriter, JSONWriter, TensorboardWriter


def storage_with(iterations, start=0):
    storage = EventStorage(start)
    for it in iterations:
        storage.iter = it
        storage.put_scalars(loss=1.0 / (it + 1), lr=0.1, time=0.5)
        yield storage


def test_json_lines_hold_each_written_iteration(tmp_path):
    path = str(tmp_path / "metrics.json")
    writer = JSONWriter(path)
    for storage in storage_with(range(4)):
        writer.write(storage)
    writer.close()
    lines = [json.loads(line) for line in open(path)]
    assert [line["iteration"] for line in lines] == [0, 1, 2, 3]
    assert lines[2] == {"iteration": 2, "loss": 1 / 3, "lr": 0.1, "time": 0.5}


def test_a_resumed_json_writer_drops_lines_the_killed_run_wrote_after_its_checkpoint(tmp_path):
    path = str(tmp_path / "metrics.json")
    writer = JSONWriter(path)
    for storage in storage_with(range(7)):  # killed after writing iteration 6; the checkpoint was at 5
        writer.write(storage)
    writer.close()
    writer = JSONWriter(path, start_iter=5)
    for storage in storage_with(range(5, 8), start=5):
        writer.write(storage)
    writer.close()
    assert [json.loads(line)["iteration"] for line in open(path)] == [0, 1, 2, 3, 4, 5, 6, 7]


def test_a_new_run_starts_a_new_history(tmp_path):
    path = str(tmp_path / "metrics.json")
    for _ in range(2):
        writer = JSONWriter(path)
        for storage in storage_with(range(3)):
            writer.write(storage)
        writer.close()
    assert [json.loads(line)["iteration"] for line in open(path)] == [0, 1, 2]


def test_console_line_has_iteration_eta_losses_lr_and_time(caplog):
    writer = ConsoleWriter(max_iter=100)
    with caplog.at_level(logging.INFO, logger="pet.engine.loop.writers"):
        for storage in storage_with(range(10)):
            pass
        writer.write(storage)
    # Iteration 9 (numbered from 0, as in metrics.json), 90 left at 0.5 s each: 45 s. The loss as the median of
    # the window: 1/1 .. 1/10, median (1/5 + 1/6) / 2.
    line = caplog.records[-1].getMessage()
    assert line.startswith(f"iter: 9/100  eta: 0:00:45  loss: {(1 / 5 + 1 / 6) / 2:.4f}  lr: 0.1  time: 0.5000  "
                           "max_mem: ")
    assert int(line.split("max_mem: ")[1].rstrip("M")) > 0


def test_the_eta_is_the_mean_of_every_iteration_not_the_recent_median(caplog):
    storage, writer = EventStorage(window=3), ConsoleWriter(max_iter=20)
    for it, seconds in enumerate([1.0, 1.0, 1.0, 1.0, 4.0, 4.0, 4.0]):  # a slow spell at the end
        storage.iter = it
        storage.put_scalars(loss=1.0, time=seconds)
    with caplog.at_level(logging.INFO, logger="pet.engine.loop.writers"):
        writer.write(storage)
    # 13 left (iterations 7 to 19) at the mean 16 / 7 s; the median of the last three (4 s) would say 52 s.
    assert f"eta: 0:00:{int(13 * 16 / 7):02d}" in caplog.text and "time: 4.0000" in caplog.text


def test_groups_at_different_lrs_are_shown_each_and_many_as_a_range(caplog):
    storage = EventStorage()
    storage.put_scalars(loss=1.0, lr=0.05, **{"lr/weight": 0.05, "lr/head": 0.5})
    many = EventStorage()
    many.put_scalars(loss=1.0, lr=0.1, **{f"lr/layer{i}": 0.1 * 0.5 ** i for i in range(6)})
    same = EventStorage()
    same.put_scalars(loss=1.0, lr=0.1, **{"lr/weight": 0.1, "lr/norm+bias": 0.1})
    with caplog.at_level(logging.INFO, logger="pet.engine.loop.writers"):
        for each in (storage, many, same):
            ConsoleWriter(max_iter=10).write(each)
    lines = [r.getMessage() for r in caplog.records]
    assert "loss: 1.0000  lr/weight: 0.05  lr/head: 0.5  " in lines[0]
    assert f"lr: {0.1 * 0.5 ** 5:.6g}..0.1 (6 groups)" in lines[1]
    assert "loss: 1.0000  lr: 0.1  max_mem" in lines[2]


def test_validation_results_show_on_the_line_of_their_iteration_only(caplog):
    storage = EventStorage()
    storage.put_scalars(loss=1.0, lr=0.1, **{"val/accuracy": 90.0, "val_ema/accuracy": 91.0, "grad_norm": 2.5})
    writer = ConsoleWriter(max_iter=10)
    with caplog.at_level(logging.INFO, logger="pet.engine.loop.writers"):
        writer.write(storage)
        storage.iter = 1
        storage.put_scalars(loss=0.5, lr=0.1)
        writer.write(storage)
    first, second = [r.getMessage() for r in caplog.records]
    assert "grad_norm: 2.5  val/accuracy: 90  val_ema/accuracy: 91" in first
    assert "val" not in second and "grad_norm" not in second
    assert second.startswith("iter: 1/10  loss: 0.7500")  # the median of the two iterations' losses


def test_tensorboard_events_are_readable(tmp_path):
    writer = TensorboardWriter(str(tmp_path))
    for storage in storage_with(range(3)):
        writer.write(storage)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["loss", "lr", "time"]
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("loss")] == [(0, 1.0), (1, 0.5), (2, 0.333333)]


def test_console_line_shows_each_of_the_models_losses_whatever_their_names(caplog):
    storage = EventStorage()
    storage.loss_names = ("bbox_regression", "classification")  # FCOS's names
    storage.put_scalars(loss=3.0, bbox_regression=1.0, classification=2.0, lr=0.01, **{"val/mAP": 31.5})
    with caplog.at_level(logging.INFO, logger="pet.engine.loop.writers"):
        ConsoleWriter(max_iter=10).write(storage)
    assert "loss: 3.0000  bbox_regression: 1.0000  classification: 2.0000  lr: 0.01  val/mAP: 31.5" in caplog.text


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 0, "loss": 1.0}\n{"iteration": 1, "loss": 0.9}\n{"iteration": 2, "lo')
    with caplog.at_level(logging.WARNING, logger="pet.engine.loop.writers"):
        JSONWriter(str(path), start_iter=5).close()
    assert [json.loads(line)["iteration"] for line in path.read_text().splitlines()] == [0, 1]
    assert "dropped 1 line(s) that a killed run left half-written" in caplog.text


def test_a_hard_link_to_metrics_elsewhere_is_not_rewritten(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text('{"iteration": 0}\n{"iteration": 7}\n')
    run = tmp_path / "run"
    run.mkdir()
    os.link(outside, run / "metrics.json")
    JSONWriter(str(run / "metrics.json"), start_iter=3).close()
    assert outside.read_text() == '{"iteration": 0}\n{"iteration": 7}\n'  # untouched
    assert (run / "metrics.json").read_text() == '{"iteration": 0}\n'


def test_lines_that_are_no_rows_are_dropped_too(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 0, "loss": 1.0}\n[1, 2]\n7\n{"iteration": "x"}\n' + "[" * 100_000 + "\n")
    JSONWriter(str(path), start_iter=5).close()
    assert [json.loads(line)["iteration"] for line in path.read_text().splitlines()] == [0]
