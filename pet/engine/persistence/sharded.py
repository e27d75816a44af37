"""Checkpoint folders of sharded (FSDP) runs, written and read with torch's Distributed Checkpoint.

A folder `model_<iter>/` holds every tensor of the run's state in DCP's format, each process writing its own
shards: the model and optimizer states keyed by parameter name (`get_model_state_dict` /
`get_optimizer_state_dict`), so that they load at any number of processes, and the weight average where there is
one. Everything else (schedulers, grad scaler, trainer counters, iteration, RNG states of every process, the
config text, the optimizers' param groups) is `extra.pth`, written by rank 0 and read with `weights_only=True`:
nothing in the folder is unpickled as code. The folder is written under a temporary name (`prepare_folder`, then
`write_tensors`, or `start_folder` in the background) and renamed when every process has finished
(`finish_folder`), so a crash leaves the previous checkpoint intact.
"""
import os
import pickle
import shutil
import warnings
from concurrent.futures import Future
from typing import Any, Dict, Tuple

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import filesystem, metadata as dcp_metadata
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata

from pet.engine.persistence.safe_files import check_regular, safe_torch_load
from pet.errors import CheckpointError

EXTRA = "extra.pth"
METADATA = ".metadata"
# What DCP's own `.metadata` pickles hold: its metadata classes, torch's dtypes, sizes and layouts, and the path the
# folder was written to. Anything else (a crafted file naming `os.system`) is refused before it is built.
_METADATA_CLASSES = {
    ("torch.distributed.checkpoint.metadata", name) for name in (
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "TensorProperties", "ChunkStorageMetadata",
        "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING")
} | {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
     ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
     ("collections", "OrderedDict")}


class _MetadataUnpickler(pickle.Unpickler):
    """`pickle` restricted to the classes of DCP's metadata (torch's own reader unpickles anything)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _METADATA_CLASSES:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which DCP metadata never holds")


class SafeFileSystemReader(filesystem.FileSystemReader):
    """DCP's file-system reader, except that `.metadata` is read by `_MetadataUnpickler` and must describe
    tensors only, stored in files of the folder itself: a checkpoint folder cannot run code."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        return read_metadata(str(self.path))


def read_metadata(folder: str) -> Metadata:
    """The DCP metadata of a checkpoint folder, read safely and checked against the folder's files; a
    `CheckpointError` for a missing, truncated, crafted or inconsistent one."""
    path = os.path.join(folder, METADATA)
    if os.path.lexists(path):
        check_regular(path)  # a FIFO would hang the read
    try:
        with open(path, "rb") as f:
            loaded = _MetadataUnpickler(f).load()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint folder {folder} has no {METADATA}: it was not completely written") from None
    except Exception as e:  # a truncated or crafted pickle raises any of several types
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {' '.join(str(e).split())[:300]}") from None
    if not isinstance(loaded, Metadata) or not isinstance(loaded.state_dict_metadata, dict) \
            or not isinstance(loaded.storage_data, dict):
        raise CheckpointError(f"checkpoint {path} is not DCP metadata")
    for key, entry in loaded.state_dict_metadata.items():
        if not isinstance(entry, TensorStorageMetadata):  # bytes entries are read with a full unpickler
            raise CheckpointError(f"checkpoint {path}: {key} is not a tensor; this project's folders hold tensors only")
        if not isinstance(key, str) or not tensor_fits(entry):
            raise CheckpointError(f"checkpoint {path}: the tensor {str(key)[:100]!r} is described with a shape or "
                                  "dtype no tensor of this project has")
    if loaded.storage_meta is None:
        loaded.storage_meta = dcp_metadata.StorageMeta()
    check_storage(folder, loaded)
    return loaded


# More elements than any one tensor of a model holds (2**40 float32 are 4 TB): a size beyond it is crafted.
MAX_ELEMENTS = 1 << 40


def tensor_fits(entry: TensorStorageMetadata) -> bool:
    """Whether a tensor's metadata is one this project writes: sizes of non-negative integers, not absurdly many
    elements, a torch dtype, chunks of the same rank."""
    size = entry.size
    if not (isinstance(size, (tuple, list)) and all(isinstance(n, int) and n >= 0 for n in size)):
        return False
    elements = 1
    for n in size:
        elements *= n
    properties = getattr(entry, "properties", None)
    return (elements <= MAX_ELEMENTS and isinstance(getattr(properties, "dtype", None), torch.dtype)
            and isinstance(entry.chunks, list) and all(len(getattr(chunk, "sizes", ())) == len(size)
                                                       for chunk in entry.chunks))


def check_storage(folder: str, loaded: Metadata) -> None:
    """Every piece of tensor data the metadata points to lies inside a file of the folder (a file cut short by a
    crash, or a path out of the folder, is a `CheckpointError` before anything is read)."""
    sizes: Dict[str, int] = {}
    for index, info in loaded.storage_data.items():
        name = getattr(info, "relative_path", None)
        if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
            raise CheckpointError(f"checkpoint folder {folder}: {getattr(index, 'fqn', index)} points to {name!r}, "
                                  "not a file of the folder")
        if name not in sizes:
            file = os.path.join(folder, name)
            sizes[name] = os.path.getsize(file) if os.path.isfile(file) and not os.path.islink(file) else -1
        if sizes[name] < 0:
            raise CheckpointError(f"checkpoint folder {folder} lacks its data file {name}")
        if not (isinstance(info.offset, int) and isinstance(info.length, int) and info.offset >= 0
                and info.length >= 0 and info.offset + info.length <= sizes[name]):
            raise CheckpointError(f"checkpoint folder {folder}: {name} is shorter than its metadata says (cut short "
                                  "by a crash?)")


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


def prepare_folder(temporary: str) -> None:
    """Every process: wait until rank 0 has removed what an earlier, killed write left at `temporary`."""
    if dist.get_rank() == 0 and os.path.lexists(temporary):
        shutil.rmtree(temporary)
    dist.barrier()


def write_tensors(tensors: Dict[str, Any], temporary: str) -> None:
    """Every process: write its shards into `temporary` (DCP) and return once every process has."""
    dcp.save(tensors, checkpoint_id=temporary)


def start_folder(tensors: Dict[str, Any], temporary: str, group: dist.ProcessGroup) -> Future:
    """Every process: copy its shards to CPU memory now (DCP's staging), and write them into `temporary` in the
    background, coordinating over `group` (a process group of its own: the training's collectives go on beside
    it); the future resolves once every process's data and the metadata are written."""
    return dcp.async_save(tensors, checkpoint_id=temporary, process_group=group)


def finish_folder(folder: str, temporary: str, rest: Dict[str, Any]) -> None:
    """Rank 0, once every process's shards are in `temporary`: add the rest (`extra.pth`) and rename it `folder`."""
    if dist.get_rank() == 0:
        torch.save(rest, os.path.join(temporary, EXTRA))
        if os.path.lexists(folder):
            shutil.rmtree(folder)
        os.replace(temporary, folder)


def read_extra(folder: str) -> Dict[str, Any]:
    """The non-tensor part of a checkpoint folder (tensors and plain containers only, never code)."""
    path = os.path.join(folder, EXTRA)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint folder {folder} has no {EXTRA}: it is no checkpoint folder of this project, "
                              "or was not completely written")
    return safe_torch_load(path)


def read_tensors(folder: str, template: Dict[str, Any]) -> Dict[str, Any]:
    """Fill `template` (a nested dict of tensors: shards or full ones) from the folder's tensors, in place."""
    try:
        with warnings.catch_warnings():  # DCP warns whenever it reads in a single process, which is meant here
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(template, storage_reader=SafeFileSystemReader(folder), no_dist=not dist.is_initialized())
    except Exception as e:  # DCP wraps every process's failure in one CheckpointException
        raise CheckpointError(f"checkpoint folder {folder} does not fit this run: {' '.join(str(e).split())[:300]}"
                              ) from None
    return template


def read_section(folder: str, section: str) -> Dict[str, torch.Tensor]:
    """The full tensors under `section` (`model`, `ema.average`) of a checkpoint folder, by name, read in one
    process without a model to shard them for (`tools/test_net.py`, `tools/export_weights.py`); empty when the
    folder has no such section."""
    metadata = read_metadata(folder).state_dict_metadata
    prefix = section + "."
    flat = {key[len(prefix):]: torch.empty(meta.size, dtype=meta.properties.dtype)
            for key, meta in metadata.items() if key.startswith(prefix) and isinstance(meta, TensorStorageMetadata)}
    if flat:
        nested: Dict[str, Any] = flat
        for part in reversed(section.split(".")):
            nested = {part: nested}
        read_tensors(folder, nested)
    return flat
