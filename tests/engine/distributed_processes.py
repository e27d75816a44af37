"""Run a test function in N real processes joined by a gloo group (torch.multiprocessing.spawn)."""
import os
import uuid
from typing import Any, Callable

import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, fn: Callable[..., None], world_size: int, store_file: str, args: Any) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    fn(rank, world_size, *args)
    dist.barrier()  # none leaves while another still talks to it
    # Leave at once, past C++ teardown: now and then a background thread of torch's (gloo, checkpoint I/O) was
    # still joinable when the process ended, and std::terminate turned a finished, passing test into SIGABRT.
    os._exit(0)


def run_in_processes(fn: Callable[..., None], world_size: int, tmp_path: Any, *args: Any) -> None:
    """Call `fn(rank, world_size, *args)` in `world_size` processes; a failure in any of them fails the test with
    its traceback. `fn` must be a module-level function (it is imported in the new processes)."""
    # A fresh file each time: a second group must never meet the keys of an earlier one in a reused file.
    store = os.path.join(str(tmp_path), f"store-{uuid.uuid4().hex}")
    mp.spawn(_entry, args=(fn, world_size, store, args), nprocs=world_size, join=True)
