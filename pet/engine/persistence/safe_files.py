"""Files written and read safely: never through a symbolic link, written atomically (a crash leaves the old file or
the new one, never half of one), and read with `torch.load(weights_only=True)` (tensors and plain containers, never
code). Every file a run writes into OUTPUT_DIR goes through here."""
import os
import stat
from typing import Any

import torch

from pet.errors import CheckpointError


def safe_output_path(folder: str, name: str, folder_too: bool = False) -> str:
    """`folder/name`, refused when it is a symbolic link (outputs are never written or read through one: it could
    point outside the output folder) or something other than a regular file (a FIFO that would hang a read, a
    device; a folder unless `folder_too`: an FSDP checkpoint)."""
    path = os.path.join(folder, name)
    if os.path.islink(path):
        raise CheckpointError(f"refusing to follow the symbolic link {path} -> {os.readlink(path)} in the output "
                              "folder; remove it")
    check_regular(path, allow_missing=True, folder_too=folder_too)
    return path


def check_regular(path: str, allow_missing: bool = False, folder_too: bool = False) -> None:
    """A `CheckpointError` unless `path` is a regular file (or, with `folder_too`, a folder), or missing where that
    is allowed: a FIFO would hang the reader, a device would be read or replaced."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if allow_missing:
            return
        raise CheckpointError(f"{path} does not exist") from None
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read: {e.strerror or e}") from None
    if not (stat.S_ISREG(mode) or (folder_too and stat.S_ISDIR(mode))):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise CheckpointError(f"{path} is {kind}; a file was expected there")


def no_follow(path: str, flags: int) -> int:
    """An `opener` for `open()` that refuses a symbolic link at `path` (closing the gap between a check and the
    open)."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)


def atomic_write(path: str, write: Any) -> None:
    """Call `write(file)` on a temporary file, make it durable, and rename it to `path`.

    The temporary file is created exclusively (never through an existing file or link), and the rename replaces
    `path` itself: a symbolic link there is replaced, not followed; anything else but a regular file there (a
    folder, a device such as /dev/null, a FIFO) is an `OSError`, never replaced.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.lexists(path) and not os.path.islink(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise IsADirectoryError(21, "it is not a regular file", path) if os.path.isdir(path) else \
            FileExistsError(17, "it exists and is not a regular file", path)
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
    touched); a missing, broken or unsafe file, or one that is not a regular file, is a `CheckpointError` naming
    the path."""
    if os.path.lexists(path):
        check_regular(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError for unsafe or broken files
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {' '.join(str(e).split())[:300]}") from None
