"""FSDP2's sharded tensors (DTensors) seen through their local shards, and the reductions that give every process
the norms and flags of the full tensors."""
import math
from typing import List, Optional, Sequence, Tuple

import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor

Group = Optional[dist.ProcessGroup]


def local_shards(tensors: Sequence[Tensor]) -> Tuple[List[Tensor], Group]:
    """Each tensor's local shard (sharing its storage; a plain tensor as it is) and the process group the
    DTensors among them are sharded over (None without any)."""
    sharded = next((t for t in tensors if isinstance(t, DTensor)), None)
    if sharded is None:
        return list(tensors), None
    return [t.to_local() if isinstance(t, DTensor) else t for t in tensors], sharded.device_mesh.get_group()


def reduce_norms(norms: Tensor, norm_type: float, group: Group) -> Tensor:
    """The norms of the full tensors from the norms of this process's shards (unchanged without a group)."""
    if group is None:
        return norms
    if math.isinf(norm_type):
        dist.all_reduce(norms, dist.ReduceOp.MAX, group=group)
        return norms
    powers = norms.pow(norm_type)
    dist.all_reduce(powers, group=group)
    return powers.pow(1.0 / norm_type)


def reduce_flag(flag: Tensor, group: Group) -> Tensor:
    """1.0 on every process when any process's flag is 1.0."""
    if group is not None:
        dist.all_reduce(flag, dist.ReduceOp.MAX, group=group)
    return flag
