"""Runs that heal themselves: `torchrun --max-restarts K tools/train_net.py ... --resume` survives a worker killed
with SIGKILL (during an update or a checkpoint write), one that raises and one that hangs, ending exactly as an
uninterrupted run (every iteration once in metrics.json, the same final weights); and a relaunch that fails again
the same way stops the crash loop with exit code 4."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.tools.conftest import DEFAULT_CFG, TRAIN_NET, environment
from tests.tools.test_preemption import children
from tests.tools.test_train_net import final_weights, metrics, writing_a_checkpoint

pytestmark = pytest.mark.slow  # end-to-end: torchrun and its relaunches

# 2 processes x 8 images, 24 updates, a checkpoint every 8, every iteration written; a collective waits 8 s at most.
RUN = ["MODEL.NAME", "tests.user_builders:faulty_net", "TRAIN.BATCH_SIZE", "8", "SOLVER.SCHEDULER.TOTAL_ITERS", "24",
       "SOLVER.SCHEDULER.STEPS", "(16,)", "SOLVER.SCHEDULER.WARM_UP_ITERS", "4", "TRAIN.CHECKPOINT_PERIOD", "8",
       "TRAIN.WRITER_PERIOD", "1", "TEST.BATCH_SIZE", "360", "DISTRIBUTED.TIMEOUT_S", "8"]


def healing_job(output_dir, restarts=2):
    """The one command of a job that heals itself."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            f"--max-restarts={restarts}", TRAIN_NET, "--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(output_dir), *RUN,
            "--resume"]


def run_job(output_dir, fault=None, once=True, restarts=2, timeout=400):
    env = dict(environment(), PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    if fault:
        env["PET_TEST_FAULT"] = fault
        if once:
            env["PET_TEST_FAULT_ONCE"] = str(output_dir) + ".fired"
    return subprocess.run(healing_job(output_dir, restarts), capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted job."""
    output_dir = tmp_path_factory.mktemp("relaunch") / "reference"
    result = run_job(output_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


def assert_same_as(reference, output_dir):
    assert [row["iteration"] for row in metrics(output_dir)] == list(range(24))  # every iteration once
    assert metrics(output_dir) == metrics(reference)
    expected, got = final_weights(reference), final_weights(output_dir)
    assert all(torch.equal(expected[name], got[name]) for name in expected)


@pytest.mark.parametrize("fault", ["kill:1:13", "raise:0:13", "hang:1:13"])
def test_a_failed_worker_is_relaunched_and_the_job_ends_as_the_uninterrupted_one(reference, tmp_path, fault):
    output_dir = tmp_path / "job"
    result = run_job(output_dir, fault)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.exists(str(output_dir) + ".fired")  # the fault did happen
    assert_same_as(reference, output_dir)
    recovered = [line for line in result.stdout.splitlines() if "Recovered from the failure of launch 0 in" in line]
    assert len(recovered) == 1 and "to this launch's first (iteration 8)" in recovered[0]  # the checkpoint at 8


def test_a_worker_killed_while_writing_a_checkpoint_is_relaunched_exactly(reference, tmp_path):
    output_dir = tmp_path / "job"
    env = dict(environment(), PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    process = subprocess.Popen(healing_job(output_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    deadline = time.time() + 300
    while not writing_a_checkpoint(output_dir) and process.poll() is None and time.time() < deadline:
        time.sleep(0.001)
    assert process.poll() is None, "the job ended before a checkpoint was caught being written"
    writer = next(pid for pid in children(process.pid)
                  if b"RANK=0\x00" in open(f"/proc/{pid}/environ", "rb").read())  # rank 0 writes the files
    os.kill(writer, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    assert "Recovered from the failure of launch 0" in stdout
    assert_same_as(reference, output_dir)


def test_a_relaunch_that_fails_before_passing_its_resume_point_stops_the_crash_loop(tmp_path):
    output_dir = tmp_path / "job"
    result = run_job(output_dir, "raise:1:8", once=False, restarts=3)  # iteration 8: right after the checkpoint
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: crash loop")]
    assert lines and set(lines) == {lines[0]}, result.stderr[-3000:]  # one line, the same for every relaunch after
    assert lines[0] == ("error: crash loop: relaunch 1 resumed at iteration 8 and failed again before passing it (at "
                        "iteration 8); the first error: RuntimeError: injected fault at iteration 8; fix the cause, "
                        "then run the same command again")
    assert "exitcode: 4" in result.stderr  # torchrun names the workers' exit code
    record = json.loads((output_dir / ".launch.json").read_text())
    assert record["launch"] == 3 and record["crash_loop"].startswith("crash loop: relaunch 1")
