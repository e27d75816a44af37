"""DISTRIBUTED.STRATEGY FSDP end to end on CPU (gloo): train_net with 2 processes trains as DDP does, writes
checkpoint folders, survives SIGKILL with an exact resume, resumes at another number of processes (2 -> 1,
1 -> 2), and test_net / export_weights read its folders; the shapes detector trains sharded too."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from pet.engine.persistence.checkpointer import checkpoint_weights, read_checkpoint
from tests.tools.conftest import DEFAULT_CFG, FAST, TEST_NET, TRAIN_NET, environment
from tests.tools.test_preemption import children
from tests.tools.test_train_net import metrics
from tests.toy_detection import SHAPES_CFG, tiny_overrides

pytestmark = pytest.mark.slow  # end-to-end: real processes

EXPORT = os.path.join(os.path.dirname(TRAIN_NET), "export_weights.py")
# 2 processes x 4 images per update, full-model clipping that acts, a weight EMA, every iteration written.
SHARDED = ["TRAIN.BATCH_SIZE", "4", "SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", "True",
           "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", "1.0", "SOLVER.EMA.ENABLED", "True",
           "SOLVER.EMA.WARMUP_ITERS", "5", "DISTRIBUTED.STRATEGY", "FSDP", "TRAIN.CHECKPOINTS_TO_KEEP", "2"]


def torchrun(nproc, output_dir, *extra, cfg=DEFAULT_CFG):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    return [*launcher, TRAIN_NET, "--cfg", cfg, "OUTPUT_DIR", str(output_dir), *FAST, *SHARDED, *extra]


def run(command, timeout=600):
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    """One uninterrupted 2-process FSDP run of 40 updates: (output folder, completed process)."""
    output_dir = tmp_path_factory.mktemp("fsdp")
    return output_dir, run(torchrun(2, output_dir))


def test_checkpoints_are_folders_that_test_net_and_export_weights_read(sharded_run, tmp_path):
    output_dir, result = sharded_run
    assert "FSDP: 4 blocks and the root sharded over 2 processes" in result.stdout
    assert sorted(n for n in os.listdir(output_dir) if n.startswith("model_")) == [
        "model_0000020", "model_0000030", "model_final"]  # the oldest periodic folder pruned
    assert (output_dir / "last_checkpoint").read_text() == "model_final\n"
    assert {"extra.pth", ".metadata"} <= set(os.listdir(output_dir / "model_final"))
    logged = metrics(output_dir)[-1]
    for option, prefix in (([], "val"), (["--ema"], "val_ema")):  # the weights and their average, as logged
        evaluated = run([sys.executable, TEST_NET, "--cfg", DEFAULT_CFG, "--weights", str(output_dir / "model_final"),
                         *option])
        assert f"val/accuracy={logged[prefix + '/accuracy']:.4f}" in evaluated.stdout
    exported = tmp_path / "weights.pth"
    run([sys.executable, EXPORT, "--weights", str(output_dir / "model_final"), "--out", str(exported)])
    state = torch.load(exported, weights_only=True)
    assert state.keys() == checkpoint_weights(str(output_dir / "model_final")).keys()
    assert state["backbone.conv1.weight"].shape == (64, 3, 3, 3)  # full tensors, not shards


def test_fsdp_trains_like_ddp_with_clipping(tmp_path):
    short = ["SOLVER.SCHEDULER.TOTAL_ITERS", "12", "SOLVER.SCHEDULER.STEPS", "(8,)", "SOLVER.SCHEDULER.WARM_UP_ITERS",
             "3", "SOLVER.OPTIMIZER.BASE_LR", "0.002", "TRAIN.CHECKPOINT_PERIOD", "100"]
    run(torchrun(2, tmp_path / "fsdp", *short))
    run(torchrun(2, tmp_path / "ddp", *short, "DISTRIBUTED.STRATEGY", "DDP"))
    sharded = checkpoint_weights(str(tmp_path / "fsdp" / "model_final"))
    replicated = read_checkpoint(str(tmp_path / "ddp" / "model_final.pth"))["model"]
    assert sharded.keys() == replicated.keys()
    for name, tensor in replicated.items():
        torch.testing.assert_close(sharded[name], tensor, rtol=1e-4, atol=1e-4, msg=name)  # reduction order
    for ours, theirs in zip(metrics(tmp_path / "fsdp"), metrics(tmp_path / "ddp")):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-4) and ours["lr"] == theirs["lr"]


@pytest.mark.parametrize("background", [False, True], ids=["sync", "async"])
def test_sigkill_then_resume_matches_the_uninterrupted_run(sharded_run, tmp_path, background):
    reference, interrupted = sharded_run[0], tmp_path / "interrupted"
    process = subprocess.Popen(torchrun(2, interrupted, "TRAIN.ASYNC_CHECKPOINT", str(background)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment())
    deadline = time.time() + 300
    while not (interrupted / "last_checkpoint").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    workers = children(process.pid)
    assert len(workers) == 2
    for pid in workers + [process.pid]:  # both workers at once, then torchrun
        os.kill(pid, signal.SIGKILL)
    process.wait()
    while any(os.path.exists(f"/proc/{pid}/status") and "zombie" not in open(f"/proc/{pid}/status").read()
              for pid in workers):
        time.sleep(0.05)  # gone, and with them the lock on the folder
    assert not (interrupted / "model_final").exists()
    resumed = run(torchrun(2, interrupted, "--resume", "TRAIN.ASYNC_CHECKPOINT", str(background)))
    assert "Starting training at iteration 10; the last is 39" in resumed.stdout
    assert metrics(interrupted) == metrics(reference)
    expected, got = (checkpoint_weights(str(folder / "model_final")) for folder in (reference, interrupted))
    assert all(torch.equal(expected[name], got[name]) for name in expected)


@pytest.mark.parametrize("victim", [".metadata", "__0_0.distcp"])
def test_resume_passes_over_a_folder_a_crash_cut_short(sharded_run, tmp_path, victim):
    reference, output_dir = sharded_run[0], tmp_path / "run"
    shutil.copytree(reference, output_dir)
    path = output_dir / "model_final" / victim
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    resumed = run(torchrun(2, output_dir, "--resume"))
    assert f"Cannot resume from {output_dir / 'model_final'}" in resumed.stdout + resumed.stderr
    assert "Starting training at iteration 30; the last is 39" in resumed.stdout
    assert metrics(output_dir) == metrics(reference)
    expected, got = (checkpoint_weights(str(folder / "model_final")) for folder in (reference, output_dir))
    assert all(torch.equal(expected[name], got[name]) for name in expected)


@pytest.mark.parametrize("saved_by, resumed_by", [(2, 1), (1, 2)])
def test_a_run_resumes_at_another_number_of_processes(sharded_run, tmp_path, saved_by, resumed_by):
    output_dir = tmp_path / "run"
    if saved_by == 2:
        shutil.copytree(sharded_run[0], output_dir)
    else:
        run(torchrun(1, output_dir))
    shutil.rmtree(output_dir / "model_final")
    (output_dir / "last_checkpoint").write_text("model_0000030\n")
    resumed = run(torchrun(resumed_by, output_dir, "--resume"))
    assert (f"The world size changed: the checkpoint was written by {saved_by} processes, this run has "
            f"{resumed_by}") in resumed.stdout
    assert "Starting training at iteration 30; the last is 39" in resumed.stdout
    rows = metrics(output_dir)
    assert [row["iteration"] for row in rows] == list(range(40)) and "val/accuracy" in rows[-1]


def test_the_shapes_detector_trains_sharded(shapes_root, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", TRAIN_NET,
               "--cfg", SHAPES_CFG, *tiny_overrides(shapes_root, tmp_path), "DISTRIBUTED.STRATEGY", "FSDP",
               "SOLVER.SCHEDULER.TOTAL_ITERS", "3", "TRAIN.CHECKPOINT_PERIOD", "100"]
    result = run(command)
    assert "FSDP: 6 blocks and the root sharded over 2 processes" in result.stdout
    rows = metrics(tmp_path)
    assert len(rows) == 3 and "val/mAP" in rows[-1]
    assert os.path.isdir(tmp_path / "model_final")
