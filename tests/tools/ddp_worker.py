"""Run under torchrun by test_distributed.py: train, then save this rank's final weights to OUT/rank<r>.pt, with
the next draw of its RNG under the key `next_random` and its weight average (if any) under `ema.<name>`."""
import os
import sys

import torch

from pet.engine.distributed.process_group import get_rank, shutdown_distributed
from pet.engine.loop.hooks import EMAHook
from pet.engine.runs.cli import load_config
from pet.engine.runs.runner import build_run

if __name__ == "__main__":
    out, cfg_file, *overrides = sys.argv[1:]
    run = build_run(load_config(cfg_file, overrides))
    run.train()
    averages = [hook.ema for hook in run.trainer.hooks if isinstance(hook, EMAHook)]
    average = {f"ema.{k}": v for k, v in averages[0].averaged_state().items()} if averages else {}
    torch.save({**run.model.state_dict(), **average, "next_random": torch.rand(4)},
               os.path.join(out, f"rank{get_rank()}.pt"))
    shutdown_distributed()
