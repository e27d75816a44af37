"""The run's output folder (OUTPUT_DIR): claimed by one run at a time, cleared of an earlier run's files (kept in
a dated subfolder, nothing deleted), cleaned of temporary files a killed run left, and given the run's config.

The claim is an exclusive `fcntl.flock` on OUTPUT_DIR/.lock, held while the run lives: a second run into the same
folder is refused at once, and a run that crashed or was killed cannot leave the folder locked (the operating
system releases the lock with the process). The lock file is never opened through a symbolic link. Only the files a
run writes are moved aside; anything else a user keeps in the folder stays where it is.
"""
import datetime
import fcntl
import logging
import os
import re
import shutil
import stat
import tempfile
from typing import Any, List, Optional, Set

from pet.engine.persistence.safe_files import atomic_write
from pet.errors import ConfigError

logger = logging.getLogger(__name__)

LOCK = ".lock"
ARCHIVE = re.compile(r"^run-\d{8}-\d{6}(-\d+)?$")  # folders of earlier runs, named after their start
TEMPORARY = re.compile(r"^\..+\.tmp-\d+$")  # what `atomic_write` writes before its rename
# What a run (and the tools that write into OUTPUT_DIR) writes there: the files an earlier run leaves behind.
RUN_FILES = re.compile(r"^(config\.yaml|log\.txt|metrics\.json|last_checkpoint|events\.out\.tfevents\..+"
                       r"|model_(\d+|final|best|last_good)(\.pth)?|lr_find\.(png|json)|schedule\.png"
                       r"|\.heartbeat|\.launch\.json|\.failure-\d+-\d+\.json)$")


def make_output_dir(path: str) -> None:
    """Create OUTPUT_DIR (and its parents); a path that cannot be a writable folder is a `ConfigError`."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=path)  # a read-only file system refuses this even to root
        probe.close()
    except FileExistsError:
        raise ConfigError(f"OUTPUT_DIR = {path!r} is a file, not a folder") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"OUTPUT_DIR = {path!r} cannot be used as the output folder: {reason}") from None


def open_lock_file(path: str) -> int:
    """`path` opened for reading and writing, created if missing, never through a symbolic link (its target, outside
    the folder, would get the process id); a link or a folder there is a `ConfigError`."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    except OSError as e:
        if os.path.islink(path):
            raise ConfigError(f"{path} is a symbolic link (to {os.readlink(path)}); the run will not write through "
                              "it: remove it") from None
        if os.path.isdir(path):
            raise ConfigError(f"{path} is a folder, not the run's lock file: remove it") from None
        raise ConfigError(f"cannot create the lock file {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):  # a FIFO or a device
        os.close(descriptor)
        raise ConfigError(f"{path} is not a regular file, so not the run's lock file: remove it")
    return descriptor


# The descriptors of the locks this process holds. A process forked from it (a data-loader worker) must not keep
# them: a flock belongs to the open file, which a fork shares, so a worker that outlives a killed run (it notices
# the death of its parent only after seconds) would keep the folder locked against the run's own --resume.
_HELD: Set[int] = set()


def _drop_inherited_locks() -> None:
    for descriptor in _HELD:
        try:
            os.close(descriptor)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


class FolderLock:
    """An exclusive lock on a folder, held until `release()` (or the end of the process), never by its forks."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, LOCK)
        self._descriptor: Optional[int] = open_lock_file(self.path)
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._descriptor)
            raise ConfigError(f"OUTPUT_DIR = {folder!r} is in use by another run (process {holder}); wait for it to "
                              "end or choose another OUTPUT_DIR") from None
        _HELD.add(self._descriptor)
        os.ftruncate(self._descriptor, 0)
        os.pwrite(self._descriptor, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        """Let another run use the folder."""
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            _HELD.discard(self._descriptor)
            os.close(self._descriptor)
            self._descriptor = None


def run_files(folder: str) -> List[str]:
    """The entries of OUTPUT_DIR that a run wrote (not the lock, not earlier runs' folders, not the user's own
    files)."""
    return sorted(name for name in os.listdir(folder) if RUN_FILES.match(name))


def archive_previous_run(folder: str) -> Optional[str]:
    """Move the files of an earlier run in `folder` into `folder/run-<its start time>/`; return that subfolder
    (None when the folder holds no run). Files the run did not write stay where they are."""
    names = run_files(folder)
    if not names:
        return None
    started = min(os.lstat(os.path.join(folder, name)).st_mtime for name in names)
    if os.path.exists(os.path.join(folder, "config.yaml")):  # written first by a run
        started = os.lstat(os.path.join(folder, "config.yaml")).st_mtime
    base = "run-" + datetime.datetime.fromtimestamp(started).strftime("%Y%m%d-%H%M%S")
    target, suffix = os.path.join(folder, base), 2
    while os.path.lexists(target):
        target, suffix = os.path.join(folder, f"{base}-{suffix}"), suffix + 1
    os.mkdir(target)
    for name in names:
        shutil.move(os.path.join(folder, name), os.path.join(target, name))
    return target


def remove_temporaries(folder: str) -> List[str]:
    """Delete the temporary files (and FSDP checkpoint folders) of writes that a killed run never finished; return
    their names."""
    names = [name for name in os.listdir(folder) if TEMPORARY.match(name)]
    for name in names:
        path = os.path.join(folder, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    return names


def claim_output_dir(path: str, resume: bool) -> FolderLock:
    """Create and lock OUTPUT_DIR for this run. A new run (not `resume`) first moves an earlier run's files into
    a dated subfolder; either way the temporary files of an interrupted write are removed."""
    make_output_dir(path)
    lock = FolderLock(path)
    if not resume:
        moved = archive_previous_run(path)
        if moved:
            logger.info("OUTPUT_DIR held an earlier run: its files are now in %s (use --resume to continue a run)",
                        moved)
    removed = remove_temporaries(path)
    if removed:
        logger.info("Removed %d temporary files of an interrupted write: %s", len(removed), ", ".join(removed))
    return lock


def write_config(cfg: Any) -> None:
    """OUTPUT_DIR/config.yaml: the run's merged config."""
    atomic_write(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), lambda f: f.write(cfg.dump().encode()))
