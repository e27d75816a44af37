"""Objects named in a config by their import path: `pkg.module:name` or `pkg.module.name` (another package's
optimizer class, a user's model or data-set builder)."""
import importlib
import inspect
import os
import re
import sys
import traceback
from typing import Any, Callable

from pet.errors import ConfigError

# Dotted identifiers, then `:` or `.` and the name: what `importlib` can import and `getattr` can read.
# Packages the README names for optimizers, and how to install each (what a missing one's error suggests).
KNOWN_PACKAGES = {"timm": "-e .[timm]", "lion_pytorch": "lion-pytorch", "schedulefree": "schedulefree"}
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[:.][A-Za-z_]\w*$")


def is_import_path(value: Any) -> bool:
    """Whether a config value names an object by import path (it has a `:` or a `.`)."""
    return isinstance(value, str) and (":" in value or "." in value)


def search_working_directory() -> None:
    """Let modules of the working directory import, as `python -m` does (a script puts its own folder on the
    path, not the one it is run from); last, so that they never shadow an installed package."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)


def import_attribute(path: str, key: str) -> Any:
    """The object `path` names; a path of another form, a module that does not import, or one without such a
    name, is a `ConfigError` that names `key`."""
    if not IMPORT_PATH.match(path):
        raise ConfigError(f"{key} = {path!r} is not an import path; write pkg.module:name")
    module_name, _, attribute = path.replace(":", ".").rpartition(".")
    search_working_directory()
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        root = module_name.split(".")[0]
        hint = f"; pip install {KNOWN_PACKAGES[root]}" if root in KNOWN_PACKAGES else ""
        raise ConfigError(f"{key} = {path!r}: cannot import {module_name} ({e}; searched the working directory "
                          f"{os.getcwd()} and the installed packages){hint}") from None
    except (Exception, SystemExit) as e:  # the module's own code failed as it was imported
        raise ConfigError(f"{key} = {path!r}: importing {module_name} raised {describe(e)}") from None
    if not hasattr(module, attribute):
        raise ConfigError(f"{key} = {path!r}: {module_name} has nothing named {attribute!r}")
    return getattr(module, attribute)


def builder(path: str, key: str, arguments: str, count: int) -> Callable[..., Any]:
    """The function `path` names, checked to take `count` positional arguments (`arguments` says which, in the
    error)."""
    function = import_attribute(path, key)
    try:
        inspect.signature(function).bind(*range(count))
    except (TypeError, ValueError):
        raise ConfigError(f"{key} = {path!r} is not a function of ({arguments})") from None
    return function


def call_builder(path: str, key: str, arguments: str, *args: Any) -> Any:
    """Call the builder `path` names with `args`; whatever it raises is one `ConfigError` naming `key`, the error
    and where it was raised (the user's builder, or something that is no builder at all, such as `os:system`)."""
    function = builder(path, key, arguments, len(args))
    try:
        return function(*args)
    except (Exception, SystemExit) as e:  # the user's code, not this project's: one line that says where
        raise ConfigError(f"{key} = {path!r} failed when called with ({arguments}): {describe(e)}") from None


def describe(error: BaseException) -> str:
    """`Type: message at file:line in function`, the innermost frame of the error's traceback (past the frame
    that caught it), in one short line."""
    frames = traceback.extract_tb(error.__traceback__)[1:]
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}{where}"
