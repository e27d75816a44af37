"""Command-line plumbing for tools/: argument parsing and one-line `error: ...` exits, never a traceback."""
import argparse
import os
import shlex
import stat
import sys
from typing import Any, Callable, List, Optional, Sequence

import yaml

from pet.config import get_cfg
from pet.config.node import UniqueKeyLoader
from pet.engine.persistence.safe_files import atomic_write
from pet.errors import USER_ERRORS, ConfigError, CrashLoopError, Preempted

# The exit code of a run that SIGTERM or SIGUSR1 stopped with a checkpoint (resume it with --resume).
PREEMPTED_EXIT_CODE = 3
# The exit code of a relaunch that stopped a crash loop (the same failure again).
CRASH_LOOP_EXIT_CODE = 4


class CommandLineError(ValueError):
    """A malformed command line."""


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds `(default: X)` to an option's help where it tells something: not for flags, options without a
    default, or help that already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are exceptions, reported by `run` as one line; options must be spelled out
    (`--resum` is an error, not `--resume`); `--help` shows every option's default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)  # --help shows the defaults
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandLineError(message)


def load_config(cfg_file: str, overrides: List[str]) -> Any:
    """The defaults, then the YAML file, then `KEY VALUE` overrides; `ConfigError` on any problem."""
    cfg = get_cfg()
    cfg.merge_from_file(cfg_file)
    cfg.merge_from_list(overrides)
    return cfg


def load_config_text(text: Any, overrides: List[str], source: str) -> Any:
    """The defaults, then the YAML `text` (a config as `cfg.dump()` wrote it, e.g. the one a checkpoint stores),
    then `KEY VALUE` overrides; text that is no mapping of known keys is a `ConfigError` naming `source`."""
    try:
        loaded = yaml.load(text, Loader=UniqueKeyLoader) if isinstance(text, str) else None
    except ConfigError as e:  # the loader's own check: aliases that expand past any config's size
        raise ConfigError(f"the config stored in {source}: {e}") from None
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        raise ConfigError(f"the config stored in {source} is not valid YAML: {' '.join(str(e).split())[:200]}") \
            from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source} stores no config (a {type(loaded).__name__}, not a mapping of keys)")
    cfg = get_cfg()
    try:
        cfg.merge_from_other_cfg(loaded)
    except ConfigError as e:  # e.g. a key of an older version: say it is the stored config, not the command line
        raise ConfigError(f"the config stored in {source}: {e}") from None
    cfg.merge_from_list(overrides)  # outside the try: an override's error is the command line's own
    return cfg


def say_error(message: str, every_process: bool = False) -> None:
    """Print `message` on stderr. A bad config or command line is the same in every process under torchrun, and
    only rank 0 says so; other errors (a stalled peer, a process's own data) are said by each process."""
    if every_process or os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr)


def output_file(path: str, option: str, inputs: Sequence[str] = ()) -> str:
    """`path` checked as a file a tool may write, before any work and without writing anything: an empty path, a
    folder, something that exists and is not a regular file (a device, a FIFO), one of the tool's `inputs`, a
    name too long, a path under a file or in a folder that cannot be written is a `CommandLineError` naming
    `option`."""
    if not path:
        raise CommandLineError(f"{option} is empty; give a file path")
    if path.endswith(os.sep) or os.path.isdir(path):
        raise CommandLineError(f"{option} {path!r} is a folder; give a file path in it")
    if os.path.lexists(path) and not os.path.islink(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise CommandLineError(f"{option} {path!r} exists and is not a regular file; it is not replaced")
    for given in inputs:
        if os.path.exists(path) and os.path.exists(given) and os.path.samefile(path, given):
            raise CommandLineError(f"{option} {path!r} is the input {given!r}; write elsewhere")
    above = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise CommandLineError(f"{option} {path!r} lies under {above}, which is a file")
    if not os.access(above, os.W_OK):
        raise CommandLineError(f"{option} {path!r}: the folder {above} is not writable")
    if len(os.path.basename(path).encode()) > os.pathconf(above, "PC_NAME_MAX"):
        raise CommandLineError(f"{option}: the file name {os.path.basename(path)[:40]!r}... is too long")
    return path


def write_output(path: str, write: Callable[[Any], None], option: str) -> None:
    """Write `path` (checked with `output_file`) atomically, its folder created; a failure is a `CommandLineError`
    naming `option`."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, write)
    except OSError as e:
        raise CommandLineError(f"{option} {path!r} cannot be written: {e.strerror or e}") from None


def write_report(path: str, report: str) -> str:
    """Write a benchmark's markdown `report` to `path` (its folder created) and print it; return it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(report)
    print(report)
    return report


def resume_command(argv: List[str]) -> str:
    """The command line that continues this run: the same one with --resume (under torchrun: its launcher's
    line, which this process cannot see, with --resume)."""
    args = list(argv) + ([] if "--resume" in argv else ["--resume"])
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0].endswith(".py") else "tools/train_net.py"
    if "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"torchrun <the same options> {shlex.join([script, *args])}"
    return shlex.join(["python", script, *args])


def run(main: Callable[[Optional[List[str]]], Any], argv: Optional[List[str]] = None) -> int:
    """Call `main(argv)`; print a user error as `error: ...` on stderr and return 2; a run stopped by SIGTERM or
    SIGUSR1 returns 3 (SIGINT: 130) after its checkpoint; else return 0."""
    try:
        main(argv)
    except CommandLineError as e:
        say_error(f"error: {' '.join(str(e).split())} (see --help)")
        return 2
    except CrashLoopError as e:
        say_error(f"error: {' '.join(str(e).split())}")
        return CRASH_LOOP_EXIT_CODE
    except USER_ERRORS as e:
        say_error(f"error: {' '.join(str(e).split())}", every_process=not isinstance(e, ConfigError))
        return 2
    except Preempted as e:
        interrupted = e.signal_name == "SIGINT"
        message = f"{e} to continue: {resume_command(sys.argv[1:] if argv is None else argv)}"
        print(f"error: interrupted: {message}" if interrupted else message, file=sys.stderr)
        return 130 if interrupted else PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
