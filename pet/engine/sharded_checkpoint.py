"""Checkpoint folders of sharded (FSDP) runs, written and read with torch's Distributed Checkpoint.

A folder `model_<iter>/` holds every tensor of the run's state in DCP's format, each process writing its own
shards: the model and optimizer states keyed by parameter name (`get_model_state_dict` /
`get_optimizer_state_dict`), so that they load at any number of processes, and the weight average where there is
one. Everything else (schedulers, grad scaler, trainer counters, iteration, RNG states of every process, the
config text, the optimizers' param groups) is `extra.pth`, written by rank 0 and read with `weights_only=True`:
nothing in the folder is unpickled as code. The folder is written under a temporary name and renamed when every
process has finished, so a crash leaves the previous checkpoint intact.
"""
import os
import shutil
import warnings
from typing import Any, Dict, Tuple

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from pet.errors import CheckpointError

EXTRA = "extra.pth"


def split_tensors(tree: Any) -> Tuple[Any, Any]:
    """(the tensors of a nested dict, the rest of it), each as a nested dict of the same keys; the rest keeps
    every dict, empty or not, so that it still names every object. Tensors in lists stay with the rest."""
    if isinstance(tree, torch.Tensor):
        return tree, None
    if not isinstance(tree, dict):
        return None, tree
    tensors, rest = {}, {}
    for key, value in tree.items():
        t, r = split_tensors(value)
        if t is not None and not (isinstance(t, dict) and not t):
            tensors[key] = t
        if r is not None:
            rest[key] = r
    return tensors, rest


def merge(tensors: Any, rest: Any) -> Any:
    """The nested dict that `split_tensors` split."""
    if not isinstance(tensors, dict) or not isinstance(rest, dict):
        return tensors if tensors is not None else rest
    return {key: merge(tensors.get(key), rest.get(key)) for key in dict.fromkeys([*rest, *tensors])}


def is_sharded_checkpoint(path: str) -> bool:
    """Whether `path` is a checkpoint folder (else a `.pth` file)."""
    return os.path.isdir(path)


def write_folder(folder: str, data: Dict[str, Any], temporary: str) -> None:
    """Write `data` as checkpoint folder `folder`, through `temporary` (every process calls it, with the same
    arguments; the tensors may be shards)."""
    tensors, rest = split_tensors(data)
    main = dist.get_rank() == 0
    if main and os.path.lexists(temporary):
        shutil.rmtree(temporary)
    dist.barrier()
    dcp.save(tensors, checkpoint_id=temporary)
    if main:
        torch.save(rest, os.path.join(temporary, EXTRA))
        if os.path.lexists(folder):
            shutil.rmtree(folder)
        os.replace(temporary, folder)
    dist.barrier()


def read_extra(folder: str) -> Dict[str, Any]:
    """The non-tensor part of a checkpoint folder (tensors and plain containers only, never code)."""
    path = os.path.join(folder, EXTRA)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint folder {folder} has no {EXTRA}: it was not completely written") from None
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {' '.join(str(e).split())[:300]}") from None


def read_tensors(folder: str, template: Dict[str, Any]) -> Dict[str, Any]:
    """Fill `template` (a nested dict of tensors: shards or full ones) from the folder's tensors, in place."""
    try:
        with warnings.catch_warnings():  # DCP warns whenever it reads in a single process, which is meant here
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(template, checkpoint_id=folder, no_dist=not dist.is_initialized())
    except Exception as e:  # DCP wraps every process's failure in one CheckpointException
        raise CheckpointError(f"checkpoint folder {folder} does not fit this run: {' '.join(str(e).split())[:300]}"
                              ) from None
    return template


def read_section(folder: str, section: str) -> Dict[str, torch.Tensor]:
    """The full tensors under `section` (`model`, `ema.average`) of a checkpoint folder, by name, read in one
    process without a model to shard them for (`tools/test_net.py`, `tools/export_weights.py`); empty when the
    folder has no such section."""
    try:
        metadata = dcp.FileSystemReader(folder).read_metadata().state_dict_metadata
    except Exception as e:
        raise CheckpointError(f"checkpoint folder {folder} cannot be read: {' '.join(str(e).split())[:300]}") from None
    prefix = section + "."
    flat = {key[len(prefix):]: torch.empty(meta.size, dtype=meta.properties.dtype)
            for key, meta in metadata.items() if key.startswith(prefix) and isinstance(meta, TensorStorageMetadata)}
    if flat:
        nested: Dict[str, Any] = flat
        for part in reversed(section.split(".")):
            nested = {part: nested}
        read_tensors(folder, nested)
    return flat
