"""Run under torchrun by test_distributed.py: train, then save this rank's final weights to OUT/rank<r>.pt, with
the next draw of its RNG under the key `next_random`."""
import os
import sys

import torch

from pet.engine.cli import load_config
from pet.engine.distributed import get_rank, shutdown_distributed
from pet.engine.runner import build_run

if __name__ == "__main__":
    out, cfg_file, *overrides = sys.argv[1:]
    run = build_run(load_config(cfg_file, overrides))
    run.train()
    torch.save({**run.model.state_dict(), "next_random": torch.rand(4)}, os.path.join(out, f"rank{get_rank()}.pt"))
    shutdown_distributed()
