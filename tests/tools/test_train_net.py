"""tools/train_net.py end to end: outputs, SIGKILL + --resume identical to an uninterrupted run, evaluation."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from pet.engine.persistence.checkpointer import Checkpointer, read_checkpoint
from tests.tools.conftest import TEST_NET, DEFAULT_CFG, FAST, environment, train_command

pytestmark = pytest.mark.slow  # end-to-end: real processes (make test-fast skips them)


def metrics(output_dir):
    """Every metrics.json row without the wall times (of the iteration and of its wait for data), which no two runs
    share."""
    rows = [json.loads(line) for line in open(os.path.join(output_dir, "metrics.json"))]
    return [{k: v for k, v in row.items() if k not in ("time", "data_time")} for row in rows]


def final_weights(output_dir):
    return read_checkpoint(os.path.join(output_dir, "model_final.pth"))["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted fast run, shared by the tests of this module: (output folder, completed process)."""
    output_dir = tmp_path_factory.mktemp("reference")
    result = subprocess.run(train_command(output_dir), capture_output=True, text=True, env=environment(), timeout=300)
    assert result.returncode == 0, result.stderr
    return output_dir, result


def test_a_run_writes_its_outputs(reference):
    tmp_path, result = reference
    names = set(os.listdir(tmp_path))
    assert {"config.yaml", "log.txt", "metrics.json", "last_checkpoint", "model_final.pth"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    assert sorted(n for n in names if n.startswith("model_0")) == ["model_0000010.pth", "model_0000020.pth",
                                                                  "model_0000030.pth"]
    rows = metrics(tmp_path)
    assert [row["iteration"] for row in rows] == list(range(40))
    # lr of each update: base 0.05, LINEAR warmup from 0.1 over 10 updates, /10 at 20 and 30.
    assert [round(row["lr"], 8) for row in rows[:2]] == [0.005, 0.0095]
    assert [round(rows[k]["lr"], 8) for k in (10, 19, 20, 29, 30, 39)] == [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005]
    assert "val/accuracy" in rows[-1]
    assert read_checkpoint(str(tmp_path / "model_final.pth"))["classes"] == [str(d) for d in range(10)]
    # The parameter-group report comes before training, on stdout and in log.txt.
    for text in (result.stdout, open(tmp_path / "log.txt").read()):
        report = text.index("group      tensors  parameters")
        assert report < text.index("Starting training")
        assert "norm+bias" in text[report:report + 300]
    assert "Outputs in" in result.stdout


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, run_tool, reference):
    reference, interrupted = reference[0], tmp_path / "interrupted"

    process = subprocess.Popen(train_command(interrupted), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=environment())
    marker = interrupted / "last_checkpoint"
    deadline = time.time() + 120
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (interrupted / "model_final.pth").exists()  # it really died mid-way
    killed_at = read_checkpoint(str(interrupted / marker.read_text().strip()))["iteration"]
    assert 0 < killed_at < 40

    resumed = run_tool(train_command(interrupted, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"Starting training at iteration {killed_at}; the last is 39" in resumed.stdout

    # The whole history (every group's lr, every loss) and the final weights are those of the uninterrupted run.
    assert metrics(interrupted) == metrics(reference)
    expected, got = final_weights(reference), final_weights(interrupted)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path, run_tool):
    result = run_tool(train_command(tmp_path, "--resume", "SOLVER.SCHEDULER.TOTAL_ITERS", "12",
                                    "SOLVER.SCHEDULER.STEPS", "(11,)"))
    assert result.returncode == 0, result.stderr
    assert "No checkpoint in" in result.stdout and "Starting training at iteration 0; the last is 11" in result.stdout


def test_a_resume_takes_state_from_the_checkpoint_and_hyperparameters_from_the_config(tmp_path, run_tool):
    first = run_tool(train_command(tmp_path, "SOLVER.SCHEDULER.TOTAL_ITERS", "10", "SOLVER.SCHEDULER.STEPS", "(8,)"))
    assert first.returncode == 0, first.stderr
    extended = run_tool(train_command(tmp_path, "--resume", "SOLVER.SCHEDULER.TOTAL_ITERS", "20",
                                      "SOLVER.SCHEDULER.STEPS", "(8,)", "SOLVER.OPTIMIZER.BASE_LR", "0.2"))
    assert extended.returncode == 0, extended.stderr
    assert "Starting training at iteration 10; the last is 19" in extended.stdout
    assert "Resuming with SOLVER.OPTIMIZER.BASE_LR = 0.2 (the checkpoint's run had 0.05)" in extended.stdout
    assert "Resuming with SOLVER.SCHEDULER.TOTAL_ITERS = 20 (the checkpoint's run had 10)" in extended.stdout
    assert "batches differ" not in extended.stdout + extended.stderr  # the data order is unchanged
    rows = metrics(tmp_path)
    assert [row["iteration"] for row in rows] == list(range(20))
    # From iteration 10 on: the new BASE_LR x the schedule's factor there (warmup over, x 0.1 from the step at 8).
    assert [row["lr"] for row in rows[10:]] == pytest.approx([0.2 * 0.1] * 10, rel=1e-12)
    assert rows[9]["lr"] == pytest.approx(0.05 * (0.1 * 0.1 + 0.9) * 0.1, rel=1e-12)  # the first run: warmup 9/10


def test_test_net_evaluates_a_checkpoint(run_tool, reference):
    tmp_path = reference[0]
    result = run_tool([sys.executable, TEST_NET, "--cfg", DEFAULT_CFG, "--weights", str(tmp_path / "model_final.pth"),
                       *FAST[-2:]])
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.strip().splitlines()[-1].split()[0].split("=")[1])
    logged = metrics(tmp_path)[-1]["val/accuracy"]
    assert abs(accuracy - logged) < 1e-3
    assert "was trained on 10 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in result.stdout


TWO_OPTIMIZERS = os.path.join(os.path.dirname(DEFAULT_CFG), "resnet18_two_optimizers.yaml")
# The head's AdamW runs a chained schedule (flat, then cosine) with beta1 cycling against its lr.
CHAINED_HEAD = ["SOLVER.OPTIMIZERS.head.SCHEDULER.POLICY", "CHAIN",
                "SOLVER.OPTIMIZERS.head.SCHEDULER.CHAIN.PHASES", "(('CONSTANT', 0, 15), ('COSINE', 15, 40))",
                "SOLVER.OPTIMIZERS.head.SCHEDULER.MOMENTUM.POLICY", "CYCLIC"]


def test_two_optimizers_with_a_chained_schedule_train_and_resume_exactly(tmp_path, run_tool):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    command = train_command(reference, *CHAINED_HEAD)
    command[command.index(DEFAULT_CFG)] = TWO_OPTIMIZERS
    result = run_tool(command)
    assert result.returncode == 0, result.stderr
    assert "Optimizer SGD with 2 parameter groups" in result.stdout and "Optimizer AdamW" in result.stdout

    # A crash right after the checkpoint of iteration 20: the later files never got written.
    shutil.copytree(reference, resumed)
    for name in ("model_0000030.pth", "model_final.pth"):
        os.remove(resumed / name)
    (resumed / "last_checkpoint").write_text("model_0000020.pth\n")
    command[command.index(str(reference))] = str(resumed)
    result = run_tool(command + ["--resume"])
    assert result.returncode == 0, result.stderr
    assert "Starting training at iteration 20; the last is 39" in result.stdout

    rows = metrics(reference)
    assert metrics(resumed) == rows
    # The head's lr: flat 0.002 for 15 iterations, then a cosine to 0 at 40; the backbone's SGD + STEP as before.
    assert [rows[k]["lr/head/weight"] for k in (0, 14)] == pytest.approx([0.002, 0.002])
    assert rows[27]["lr/head/weight"] == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi * 12 / 25)))
    assert [rows[k]["lr/backbone/backbone.weight"] for k in (0, 25)] == pytest.approx([0.005, 0.005])
    expected, got = final_weights(reference), final_weights(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    state = read_checkpoint(os.path.join(reference, "model_final.pth"))
    assert sorted(state["optimizers"]) == sorted(state["schedulers"]) == ["backbone", "head"]


def metrics_rows(output_dir):
    path = os.path.join(output_dir, "metrics.json")
    return sum(1 for _ in open(path)) if os.path.exists(path) else 0


def writing_a_checkpoint(output_dir):
    """Whether a checkpoint is being written: its temporary file exists, not yet renamed."""
    return os.path.isdir(output_dir) and any(name.startswith(".model_") and ".tmp-" in name
                                             for name in os.listdir(output_dir))


# Where each attempt is killed: once metrics.json holds N rows (between updates), or while a checkpoint is being
# written (its temporary file exists). Each attempt resumes the one before.
KILL_POINTS = [("rows", 6), ("writing", None), ("rows", 18), ("writing", None), ("rows", 30)]


@pytest.mark.parametrize("background", [False, True], ids=["sync", "async"])
def test_sigkill_at_many_moments_never_loses_the_run(tmp_path, reference, background):
    """Kill the run again and again, between updates and in the middle of checkpoint writes (written in the
    background too, while training goes on); after each kill the latest checkpoint loads, and the resumed run ends
    exactly as the uninterrupted one."""
    output = tmp_path / "killed"
    command = train_command(output, "TRAIN.CHECKPOINT_PERIOD", "2", "TRAIN.CHECKPOINTS_TO_KEEP", "2",
                            "TRAIN.ASYNC_CHECKPOINT", str(background))
    for attempt, (kind, rows) in enumerate(KILL_POINTS):
        process = subprocess.Popen(command + (["--resume"] if attempt else []), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=environment())
        while process.poll() is None and not (writing_a_checkpoint(output) if kind == "writing"
                                              else metrics_rows(output) >= rows):
            time.sleep(0.002)
        assert process.poll() is None, f"attempt {attempt} ended before its kill point"
        process.send_signal(signal.SIGKILL)
        process.wait()
        latest = Checkpointer(str(output)).latest()
        assert latest is not None and read_checkpoint(latest)["iteration"] > 0  # complete and loadable
    final = subprocess.run(command + ["--resume"], capture_output=True, text=True, env=environment(), timeout=300)
    assert final.returncode == 0, final.stderr
    assert metrics(output) == metrics(reference[0])
    expected, got = final_weights(reference[0]), final_weights(output)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_one_run_at_a_time_per_folder_and_a_new_run_keeps_the_earlier_one(tmp_path, run_tool):
    long_run = train_command(tmp_path, "SOLVER.SCHEDULER.TOTAL_ITERS", "100000")  # still running when the second starts
    first = subprocess.Popen(long_run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment())
    deadline = time.time() + 120
    while metrics_rows(tmp_path) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = run_tool(train_command(tmp_path))
    assert first.poll() is None
    first.send_signal(signal.SIGKILL)  # the lock goes with the process
    first.wait()
    assert second.returncode == 2
    assert second.stderr.splitlines() == [f"error: OUTPUT_DIR = '{tmp_path}' is in use by another run (process "
                                          f"{first.pid}); wait for it to end or choose another OUTPUT_DIR"]
    first_rows = metrics(tmp_path)
    third = run_tool(train_command(tmp_path, "SOLVER.SCHEDULER.TOTAL_ITERS", "12", "SOLVER.SCHEDULER.STEPS", "(11,)"))
    assert third.returncode == 0, third.stderr
    (archive,) = [name for name in os.listdir(tmp_path) if name.startswith("run-")]
    assert f"its files are now in {tmp_path / archive}" in third.stdout
    assert metrics(tmp_path / archive) == first_rows  # the earlier run, whole
    assert [row["iteration"] for row in metrics(tmp_path)] == list(range(12))  # the new run, alone


EMA = ["SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.WARMUP_ITERS", "5", "SOLVER.EMA.DECAY", "0.9"]


def test_the_weight_average_resumes_exactly_and_is_evaluated_and_exported(tmp_path, run_tool):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert run_tool(train_command(reference, *EMA)).returncode == 0
    process = subprocess.Popen(train_command(killed, *EMA), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=environment())
    deadline = time.time() + 120
    while metrics_rows(killed) < 15 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert run_tool(train_command(killed, *EMA, "--resume")).returncode == 0
    rows = metrics(reference)
    assert metrics(killed) == rows and "val_ema/accuracy" in rows[-1] and "val/accuracy" in rows[-1]
    saved, resumed = (read_checkpoint(str(folder / "model_final.pth"))["ema"] for folder in (reference, killed))
    assert saved["updates"] == resumed["updates"] == 40
    assert all(torch.equal(saved["average"][k], resumed["average"][k]) for k in saved["average"])

    tested = run_tool([sys.executable, TEST_NET, "--cfg", DEFAULT_CFG, "--weights", str(reference / "model_final.pth"),
                       "--ema", *FAST[-2:]])
    assert tested.returncode == 0, tested.stderr
    accuracy = float(tested.stdout.strip().splitlines()[-1].split()[0].split("=")[1])
    assert abs(accuracy - rows[-1]["val_ema/accuracy"]) < 1e-3
    exported = tmp_path / "average.pth"
    export = run_tool([sys.executable, os.path.join(os.path.dirname(TEST_NET), "export_weights.py"), "--weights",
                       str(reference / "model_final.pth"), "--out", str(exported), "--ema"])
    assert export.returncode == 0, export.stderr
    plain = torch.load(exported, weights_only=True)
    assert plain.keys() == saved["average"].keys()
    assert all(torch.equal(plain[k], saved["average"][k]) for k in plain)


def random_image_folder(root, per_class=24, size=16):
    """train/ and val/ with two classes of random-noise images, brighter for class b."""
    generator = np.random.default_rng(0)
    for split in ("train", "val"):
        for label, offset in (("a", 0), ("b", 80)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(generator.integers(0, 160, (size, size, 3)) + offset, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_a_run_with_data_workers_and_random_augmentation_resumes_exactly(tmp_path, run_tool):
    """Random crops and flips decoded by 2 worker processes: killed and resumed (fresh workers), the run ends
    with the weights of an uninterrupted one."""
    random_image_folder(tmp_path / "images")
    images = ["DATA.DATASET", "image_folder", "DATA.ROOT", str(tmp_path / "images"), "DATA.IMAGE_SIZE", "16",
              "DATA.NUM_WORKERS", "2", "MODEL.NUM_CLASSES", "2", "TRAIN.BATCH_SIZE", "4"]
    assert run_tool(train_command(tmp_path / "whole", *images)).returncode == 0
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(train_command(interrupted, *images), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=environment())
    deadline = time.time() + 120
    while metrics_rows(interrupted) < 15 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (interrupted / "model_final.pth").exists()
    resumed = run_tool(train_command(interrupted, *images, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "Starting training at iteration 10; the last is 39" in resumed.stdout
    assert metrics(interrupted) == metrics(tmp_path / "whole")
    expected, got = final_weights(tmp_path / "whole"), final_weights(interrupted)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
