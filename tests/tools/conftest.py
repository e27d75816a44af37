"""Helpers for end-to-end tests of tools/: a small, fast digits run, and subprocess launching."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
TEST_NET = os.path.join(ROOT, "tools", "test_net.py")
DEFAULT_CFG = os.path.join(ROOT, "cfgs", "digits", "resnet18_sgd_step.yaml")

# 40 updates of 8 digits: warmup, two decays, a checkpoint every 10 updates, every iteration written.
FAST = ["TRAIN.BATCH_SIZE", "8", "SOLVER.SCHEDULER.TOTAL_ITERS", "40", "SOLVER.SCHEDULER.STEPS", "(20, 30)",
        "SOLVER.SCHEDULER.WARM_UP_ITERS", "10", "TRAIN.CHECKPOINT_PERIOD", "10", "TRAIN.WRITER_PERIOD", "1",
        "TRAIN.EVAL_PERIOD", "0", "TEST.BATCH_SIZE", "360"]


def environment() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def train_command(output_dir: str, *extra: str) -> list:
    return [sys.executable, TRAIN_NET, "--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(output_dir), *FAST, *extra]


@pytest.fixture
def run_tool():
    def run(command, timeout=300):
        return subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=timeout)
    return run
