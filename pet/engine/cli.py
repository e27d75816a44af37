"""Command-line plumbing for tools/: argument parsing and one-line `error: ...` exits, never a traceback."""
import argparse
import sys
from typing import Any, Callable, List, Optional

from pet.config import get_cfg
from pet.errors import USER_ERRORS, Preempted

# The exit code of a run that SIGTERM or SIGUSR1 stopped with a checkpoint (resume it with --resume).
PREEMPTED_EXIT_CODE = 3


class CommandLineError(ValueError):
    """A malformed command line."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are exceptions, reported by `run` as one line; options must be spelled out
    (`--resum` is an error, not `--resume`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandLineError(message)


def load_config(cfg_file: str, overrides: List[str]) -> Any:
    """The defaults, then the YAML file, then `KEY VALUE` overrides; `ConfigError` on any problem."""
    cfg = get_cfg()
    cfg.merge_from_file(cfg_file)
    cfg.merge_from_list(overrides)
    return cfg


def run(main: Callable[[Optional[List[str]]], Any], argv: Optional[List[str]] = None) -> int:
    """Call `main(argv)`; print a user error as `error: ...` on stderr and return 2; a run stopped by SIGTERM or
    SIGUSR1 returns 3 (SIGINT: 130) after its checkpoint; else return 0."""
    try:
        main(argv)
    except CommandLineError as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except Preempted as e:
        interrupted = e.signal_name == "SIGINT"
        print(f"error: interrupted: {e}" if interrupted else str(e), file=sys.stderr)
        return 130 if interrupted else PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
