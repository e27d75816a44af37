"""The run's output folder (OUTPUT_DIR): created, checked to be writable, and given the run's config."""
import os
import tempfile
from typing import Any

from pet.engine.checkpoint import atomic_write
from pet.errors import ConfigError


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


def write_config(cfg: Any) -> None:
    """OUTPUT_DIR/config.yaml: the run's merged config."""
    atomic_write(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), lambda f: f.write(cfg.dump().encode()))
