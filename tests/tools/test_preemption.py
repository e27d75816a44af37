"""Preemption: SIGTERM / SIGUSR1 stop a run between updates on every process, with a checkpoint there and exit
code 3, and --resume continues exactly; SIGINT saves too; a stalled process fails the others after
DISTRIBUTED.TIMEOUT_S instead of hanging them."""
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from pet.engine.persistence.checkpointer import read_checkpoint
from tests.tools.conftest import DEFAULT_CFG, FAST, TRAIN_NET, environment, train_command
from tests.tools.test_train_net import final_weights, metrics, metrics_rows

pytestmark = pytest.mark.slow  # end-to-end: real processes (make test-fast skips them)

NO_PERIODIC = ["TRAIN.CHECKPOINT_PERIOD", "1000"]  # the only mid-run checkpoint is the one a signal asks for


def start(command):
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())


def wait_for_rows(output, rows, process, timeout=180):
    deadline = time.time() + timeout
    while metrics_rows(output) < rows and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before the signal"


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_checkpoints_between_updates_and_resume_is_exact(tmp_path, run_tool, signal_number):
    reference = tmp_path / "reference"
    assert run_tool(train_command(reference)).returncode == 0
    stopped = tmp_path / "stopped"
    process = start(train_command(stopped, *NO_PERIODIC))
    wait_for_rows(stopped, 5, process)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3
    name = signal.Signals(signal_number).name
    done = read_checkpoint(str(stopped / (stopped / "last_checkpoint").read_text().strip()))["iteration"]
    assert 5 <= done < 40
    message, command = stderr.strip().splitlines()[-1].split(" to continue: ")
    assert message == (f"stopped by {name} after {done} iterations; the checkpoint model_{done:07d}.pth is saved: "
                       "run again with --resume")
    assert [row["iteration"] for row in metrics(stopped)] == list(range(done))  # every update before the stop
    words = shlex.split(command)  # the exact command the message gives, run as it is
    assert words[0] == "python" and words[-1] == "--resume"
    assert words[2:-1] == train_command(stopped, *NO_PERIODIC)[2:]
    resumed = run_tool([sys.executable, *words[1:]])
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(stopped) == metrics(reference)
    expected, got = final_weights(reference), final_weights(stopped)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_ctrl_c_saves_first_and_exits_as_interrupted(tmp_path):
    process = start(train_command(tmp_path, *NO_PERIODIC))
    wait_for_rows(tmp_path, 3, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted: stopped by SIGINT after ")
    assert (tmp_path / "last_checkpoint").exists()


def children(pid):
    return [int(child) for child in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def torchrun(output, *extra):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", TRAIN_NET, "--cfg",
            DEFAULT_CFG, "OUTPUT_DIR", str(output), *FAST, "MODEL.NORM", "GN", "TRAIN.BATCH_SIZE", "4", *extra]


def test_a_signal_to_one_process_stops_both_after_the_same_update(tmp_path, run_tool):
    process = start(torchrun(tmp_path, *NO_PERIODIC))
    wait_for_rows(tmp_path, 4, process)
    workers = children(process.pid)
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGUSR1)  # one process only: they must agree
    process.communicate(timeout=180)
    done = read_checkpoint(str(tmp_path / (tmp_path / "last_checkpoint").read_text().strip()))
    assert 4 <= done["iteration"] < 40 and len(done["rng"]) == 2  # saved by both, at one iteration
    resumed = run_tool(torchrun(tmp_path, *NO_PERIODIC, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [row["iteration"] for row in metrics(tmp_path)] == list(range(40))


def test_a_stalled_process_fails_the_other_with_an_error_naming_it(tmp_path):
    process = start(torchrun(tmp_path, "DISTRIBUTED.TIMEOUT_S", "10"))
    wait_for_rows(tmp_path, 2, process)
    workers = children(process.pid)
    os.kill(workers[1], signal.SIGSTOP)  # rank 1 stalls
    try:
        _, stderr = process.communicate(timeout=180)
    finally:
        for worker in workers:
            if os.path.exists(f"/proc/{worker}"):
                os.kill(worker, signal.SIGKILL)
    assert process.returncode != 0
    assert "error: process 0 of 2: a collective operation failed (DISTRIBUTED.TIMEOUT_S = 10.0)" in stderr
