"""Run a test function in N real processes joined by a gloo group (torch.multiprocessing.spawn)."""
import os
from typing import Any, Callable

import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, fn: Callable[..., None], world_size: int, store_file: str, args: Any) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_in_processes(fn: Callable[..., None], world_size: int, tmp_path: Any, *args: Any) -> None:
    """Call `fn(rank, world_size, *args)` in `world_size` processes; a failure in any of them fails the test with
    its traceback. `fn` must be a module-level function (it is imported in the new processes)."""
    store = os.path.join(str(tmp_path), f"store-{world_size}-{len(os.listdir(str(tmp_path)))}")
    mp.spawn(_entry, args=(fn, world_size, store, args), nprocs=world_size, join=True)
