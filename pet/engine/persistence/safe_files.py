"""Files written and read safely: never through a symbolic link, written atomically (a crash leaves the old file or
the new one, never half of one), and read with `torch.load(weights_only=True)` (tensors and plain containers, never
code). Every file a run writes into OUTPUT_DIR goes through here."""
import os
from typing import Any

import torch

from pet.errors import CheckpointError


def safe_output_path(folder: str, name: str) -> str:
    """`folder/name`, refused when it is a symbolic link: outputs are never written through one (it could point
    outside the output folder)."""
    path = os.path.join(folder, name)
    if os.path.islink(path):
        raise CheckpointError(f"refusing to follow the symbolic link {path} -> {os.readlink(path)} in the output "
                              "folder; remove it")
    return path


def no_follow(path: str, flags: int) -> int:
    """An `opener` for `open()` that refuses a symbolic link at `path` (closing the gap between a check and the
    open)."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)


def atomic_write(path: str, write: Any) -> None:
    """Call `write(file)` on a temporary file, make it durable, and rename it to `path`.

    The temporary file is created exclusively (never through an existing file or link), and the rename replaces
    `path` itself: a symbolic link there is replaced, not followed.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    if os.path.lexists(tmp):  # left by a crashed process with the same pid
        os.remove(tmp)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # make the rename itself durable
    finally:
        os.close(descriptor)


def safe_torch_load(path: str, mmap: bool = False) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU (memory-mapped with `mmap`: tensors are read only when
    touched); a missing, broken or unsafe file is a `CheckpointError` naming the path."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError for unsafe or broken files
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {' '.join(str(e).split())[:300]}") from None
