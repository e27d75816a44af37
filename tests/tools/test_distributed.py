"""torchrun --nproc_per_node 2 on CPU (gloo): identical replicas, and the same result as one process."""
import os
import sys

import pytest
import torch

from pet.engine.persistence.checkpointer import read_checkpoint

from tests.tools.conftest import DEFAULT_CFG, ROOT

pytestmark = pytest.mark.slow  # end-to-end: real processes (make test-fast skips them)

WORKER = os.path.join(ROOT, "tests", "tools", "ddp_worker.py")
# GroupNorm instead of BatchNorm: without batch statistics, 2 x 8 images equal 1 x 16 exactly (up to rounding).
# A small lr keeps training stable: at 0.005 this model amplifies rounding differences (batches of 8 and 16 take
# other convolution kernels on some CPUs) about threefold per update, at 0.0002 it does not.
OVERRIDES = ["MODEL.NORM", "GN", "SOLVER.OPTIMIZER.BASE_LR", "0.0002", "SOLVER.SCHEDULER.TOTAL_ITERS", "12",
             "SOLVER.SCHEDULER.STEPS", "(8,)",
             "SOLVER.SCHEDULER.WARM_UP_ITERS", "3", "TRAIN.EVAL_PERIOD", "0", "TRAIN.WRITER_PERIOD", "4",
             "SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.WARMUP_ITERS", "2"]


def torchrun(run_tool, nproc, out, batch_size):
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", WORKER,
               str(out), DEFAULT_CFG, "OUTPUT_DIR", str(out / "run"), "TRAIN.BATCH_SIZE", str(batch_size), *OVERRIDES]
    result = run_tool(command)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path, run_tool):
    two = torchrun(run_tool, 2, tmp_path / "two", batch_size=8)
    torchrun(run_tool, 1, tmp_path / "one", batch_size=16)
    rank0, rank1 = (torch.load(tmp_path / "two" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    single = torch.load(tmp_path / "one" / "rank0.pt", weights_only=True)
    # Each process draws its own random numbers (augmentations, dropout), and the checkpoint keeps every stream.
    assert not torch.equal(rank0.pop("next_random"), rank1.pop("next_random"))
    assert len(read_checkpoint(str(tmp_path / "two" / "run" / "model_final.pth"))["rng"]) == 2
    assert any(key.startswith("ema.") for key in rank0)  # the weight average is compared too
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key  # DDP replicas (and their averages) never diverge
        torch.testing.assert_close(rank0[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
    # Only rank 0 writes files and logs.
    assert "Running with 2 process(es)" in two.stdout
    assert two.stdout.count("Starting training") == 1
    assert (tmp_path / "two" / "run" / "model_final.pth").exists()
    assert sum(line.count("images per update") for line in open(tmp_path / "two" / "run" / "log.txt")) == 1
