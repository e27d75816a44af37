"""torch.distributed set-up for runs launched with `torchrun`, and the few collectives the trainer needs."""
import datetime
import os
from typing import Any, List, Tuple

import torch
import torch.distributed as dist


def relaunch_attempt() -> int:
    """How many times torchrun has relaunched this job's processes (0 for the first launch, or without torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def rendezvous_store(rank: int, world_size: int, timeout: datetime.timedelta) -> dist.Store:
    """The key-value store the processes meet in (torchrun's MASTER_ADDR:MASTER_PORT), its keys under a prefix of
    their own launch: a relaunched group never reads an address the group before it left there (gloo would try to
    connect to a dead process until it timed out, as happened on torch's agent store after a SIGKILL)."""
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent_hosts_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent serves the store
    store = dist.TCPStore(host, port, world_size, is_master=not agent_hosts_it and rank == 0, timeout=timeout,
                          multi_tenant=not agent_hosts_it)
    return dist.PrefixStore(f"pet/launch-{relaunch_attempt()}/", store)


def init_distributed(timeout_s: float = 1800.0, always: bool = False) -> Tuple[int, int, torch.device]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); return (rank, world, device).

    A plain `python` launch is one process on the first GPU, or on the CPU; with `always` (FSDP, whose sharding
    needs a group even of one) it forms a group of its own. Several processes use nccl on GPUs and gloo on CPUs;
    a collective that waits longer than `timeout_s` for another process fails instead of hanging.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    backend, timeout = "nccl" if cuda else "gloo", datetime.timedelta(seconds=timeout_s)
    if world_size > 1 and not dist.is_initialized():
        rank = int(os.environ["RANK"])
        dist.init_process_group(backend=backend, timeout=timeout, rank=rank, world_size=world_size,
                                store=rendezvous_store(rank, world_size, timeout))
    elif always and not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timeout, store=dist.HashStore(), rank=0, world_size=1)
    return get_rank(), world_size, device


def get_rank() -> int:
    """This process's rank; 0 outside a process group."""
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of processes; 1 outside a process group."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    """Whether this process writes files and logs (rank 0)."""
    return get_rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all processes (the tensor itself when there is one process)."""
    if get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def all_gather_objects(value: Any) -> List[Any]:
    """Every process's `value` (picklable), in rank order; `[value]` when there is one process."""
    if get_world_size() == 1:
        return [value]
    gathered: List[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


# What gloo and nccl say when a collective times out or a peer process is gone.
COLLECTIVE_FAILURES = ("Timed out waiting", "Connection closed by peer", "Connection reset by peer",
                       "collective operation timeout", "NCCL communicator was aborted")


def is_collective_failure(error: BaseException) -> bool:
    """Whether `error` is a collective that timed out or lost a peer (not a bug in this process)."""
    return any(text in str(error) for text in COLLECTIVE_FAILURES)


def shutdown_distributed() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()
