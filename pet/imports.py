"""Objects named in a config by their import path: `pkg.module:name` or `pkg.module.name` (another package's
optimizer class, a user's model or data-set builder)."""
import importlib
import inspect
from typing import Any, Callable

from pet.errors import ConfigError


def is_import_path(value: Any) -> bool:
    """Whether a config value names an object by import path (it has a `:` or a `.`)."""
    return isinstance(value, str) and (":" in value or "." in value)


def import_attribute(path: str, key: str) -> Any:
    """The object `path` names; a module that does not import, or has no such name, is a `ConfigError` that names
    `key`."""
    module_name, _, attribute = path.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{key} = {path!r}: cannot import {module_name} ({e})") from None
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
