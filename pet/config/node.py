"""A yacs CfgNode whose merges are strict and whose every failure is a `ConfigError`.

yacs itself raises `KeyError`, `AssertionError` or `ValueError` depending on where a merge fails, and rejects
`BASE_LR: 1` (int for a float key). This node accepts the harmless cases (int for float, list for tuple,
"inf" for a float) and turns everything else into one `ConfigError` that names the full key. A YAML file may
start from others: `_BASE_: other.yaml` (a path relative to the file, or a list of them) is read first, at any
depth, and the file's own keys are laid over it, as in detectron2.
"""
import difflib
import math
import os
import stat
from typing import Any, Iterable, List, Optional

import yaml
from yacs.config import CfgNode as _YacsCfgNode

from pet.errors import ConfigError


class CfgNode(_YacsCfgNode):
    """yacs CfgNode with strict, well-reported merges from YAML files, other nodes and key/value lists."""

    def merge_from_file(self, cfg_filename: str) -> None:
        """Merge a YAML file (after its `_BASE_` files) into this node; a missing, unreadable or malformed file,
        and a `_BASE_` cycle, are a `ConfigError`."""
        _merge_dict(load_with_bases(cfg_filename), self, prefix="")

    def merge_from_other_cfg(self, cfg_other: _YacsCfgNode, prefix: str = "") -> None:
        """Merge another node (or plain dict) into this one, with the same checks as a file; errors name keys
        as `prefix` + key (e.g. `SOLVER.OPTIMIZERS.head.` for a node laid over SOLVER.OPTIMIZER's copy)."""
        _merge_dict(cfg_other, self, prefix=prefix)

    def merge_from_list(self, cfg_list: Iterable[Any]) -> None:
        """Merge `[KEY, VALUE, KEY, VALUE, ...]` (e.g. from the command line) into this node."""
        items = list(cfg_list)
        written_together = next((str(item) for item in items[0::2] if "=" in str(item)), None)
        if written_together is not None:
            key, _, value = written_together.partition("=")
            raise ConfigError(f"config overrides are KEY VALUE pairs separated by a space: write `{key} {value}`, "
                              f"not `{written_together}`")
        if len(items) % 2:
            raise ConfigError(f"config overrides must be KEY VALUE pairs; got an odd number of items: {shown(items)}")
        for full_key, raw in zip(items[0::2], items[1::2]):
            *parents, leaf = str(full_key).split(".")
            node = self
            for depth, name in enumerate(parents):
                node = _child_node(node, name, ".".join(parents[: depth + 1]), full_key, self)
            value = self._decode_cfg_value(raw)
            if leaf not in node and node.is_new_allowed():
                node[leaf] = value  # checked when the open node is read (e.g. SOLVER.OPTIMIZERS.<name>)
                continue
            if leaf not in node:
                raise ConfigError(_unknown_key_message(node, leaf, full_key, self))
            node[leaf] = _coerce(value, node[leaf], full_key)


# More values than any config holds (the defaults have about 150): YAML aliases can make a 1 KB file expand to
# millions (a "billion laughs"), which every later step would copy, check and print.
MAX_VALUES = 10_000
# More `_BASE_` files in a chain than any real config uses; a longer chain is a mistake or an attack.
MAX_BASE_DEPTH = 32


def expanded_size(root: yaml.Node) -> int:
    """How many values a composed YAML document holds once every alias is expanded (each node counted once per
    place it appears, computed without expanding: each node's size once)."""
    sizes: dict = {}
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = [] if isinstance(node, yaml.ScalarNode) else \
            [item for pair in node.value for item in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if children_done or not children:
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key twice in one mapping is an error (PyYAML keeps the last one, so a
    second `SOLVER:` would silently drop the first), keys must be names, and a document may hold at most
    `MAX_VALUES` values once its aliases are expanded."""

    def construct_document(self, node: yaml.Node) -> Any:
        if expanded_size(node) > MAX_VALUES:
            raise ConfigError(f"config file {node.start_mark.name} expands to more than {MAX_VALUES} values (a config "
                              "holds a few hundred; YAML aliases repeated inside each other?)")
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                mark = key_node.start_mark
                raise ConfigError(f"config file {mark.name}, line {mark.line + 1}: a key must be a name, not a "
                                  f"{type(key).__name__}")
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(cfg_filename: str) -> dict:
    """The mapping a YAML config file holds; a `ConfigError` naming the file for anything else (a FIFO or a device,
    which would hang or never end, included)."""
    try:
        if not stat.S_ISREG(os.stat(cfg_filename).st_mode):
            raise ConfigError(f"config file {cfg_filename} is not a regular file")
        with open(cfg_filename, encoding="utf-8") as f:
            loaded = yaml.load(f, Loader=UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {cfg_filename} is not UTF-8 text (byte {e.start})") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path, or an integer of thousands of digits
        if isinstance(e, ConfigError):
            raise
        reason = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())[:200]
        raise ConfigError(f"cannot read config file {cfg_filename}: {reason}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {cfg_filename} is not valid YAML: {_one_line(e)}") from None
    except RecursionError:
        raise ConfigError(f"config file {cfg_filename} nests its values too deeply") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {cfg_filename} must hold a mapping of keys, got {type(loaded).__name__}")
    return loaded


def load_with_bases(cfg_filename: str, chain: Optional[List[str]] = None, read: Optional[dict] = None) -> dict:
    """The keys of a YAML config file laid over those of its `_BASE_` files (read the same way, first). Each file
    is read once however often the chain names it; a cycle, and a chain of more than `MAX_BASE_DEPTH` files, are a
    `ConfigError`."""
    chain = [*(chain or []), os.path.realpath(cfg_filename)]
    read = {} if read is None else read
    if len(chain) > MAX_BASE_DEPTH:
        raise ConfigError(f"config file {chain[0]}: its _BASE_ chain is more than {MAX_BASE_DEPTH} files deep")
    loaded = read_yaml(cfg_filename)
    merged: dict = {}
    for base in base_files(loaded.pop("_BASE_", []), cfg_filename):
        path = os.path.join(os.path.dirname(cfg_filename), base)
        if "\0" in path:
            raise ConfigError(f"config file {cfg_filename}: _BASE_ {base!r} holds a NUL character")
        real = os.path.realpath(path)
        if real in chain:
            raise ConfigError(f"config file {cfg_filename}: _BASE_ {base} leads back to itself "
                              f"({' -> '.join(os.path.basename(c) for c in chain)} -> {os.path.basename(path)})")
        if os.path.isdir(path):
            raise ConfigError(f"config file {cfg_filename}: its _BASE_ {path} is a folder, not a config file")
        if os.path.islink(path) and not os.path.exists(path):
            raise ConfigError(f"config file {cfg_filename}: its _BASE_ {path} is a symbolic link that leads nowhere")
        if not os.path.lexists(path):
            raise ConfigError(f"config file {cfg_filename}: its _BASE_ {path} does not exist")
        if real not in read:
            read[real] = load_with_bases(path, chain, read)
        merged = _overlay(merged, read[real])
    return _overlay(merged, loaded)


def base_files(bases: Any, cfg_filename: str) -> List[str]:
    """The files a `_BASE_` value names: a path or a list of paths."""
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(base, str) and base for base in bases):
        raise ConfigError(f"config file {cfg_filename}: _BASE_ = {shown(bases)} must name a file or a list of files")
    return bases


def _overlay(base: dict, top: dict) -> dict:
    """`base` with `top`'s keys laid over it, mapping by mapping."""
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _overlay(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def _merge_dict(source: dict, target: CfgNode, prefix: str) -> None:
    for key, raw in source.items():
        full_key = f"{prefix}{key}"
        if key not in target and target.is_new_allowed():
            # An open node (SOLVER.OPTIMIZERS): new entries are taken as given and checked where they are read.
            target[key] = CfgNode(new_allowed=True) if isinstance(raw, dict) else CfgNode._decode_cfg_value(raw)
        if key not in target:
            raise ConfigError(_unknown_key_message(target, key, full_key))
        if isinstance(target[key], _YacsCfgNode):
            if not isinstance(raw, dict):
                raise ConfigError(f"{full_key} is a group of keys; expected a mapping, got {shown(raw)}")
            _merge_dict(raw, target[key], prefix=f"{full_key}.")
        else:
            target[key] = _coerce(CfgNode._decode_cfg_value(raw), target[key], full_key)


def _child_node(node: CfgNode, name: str, full_key: str, whole_key: str, root: CfgNode) -> CfgNode:
    """`node[name]` (`full_key`) on the way to `whole_key` of `root`."""
    if name not in node and node.is_new_allowed():
        node[name] = CfgNode(new_allowed=True)
    if name not in node:
        raise ConfigError(_unknown_key_message(node, name, full_key, root, whole_key))
    if not isinstance(node[name], _YacsCfgNode):
        raise ConfigError(f"{full_key} is a value, not a group of keys")
    return node[name]


def _coerce(value: Any, default: Any, full_key: str) -> Any:
    """Return `value` converted to the type of `default`, or raise a `ConfigError` naming the key."""
    if isinstance(default, _YacsCfgNode):
        raise ConfigError(f"{full_key} is a group of keys; it cannot be set to {shown(value)}")
    if isinstance(value, dict):
        raise ConfigError(f"{full_key} is a value; it cannot be set to the mapping {shown(dict(value))}")
    if value is None or default is None or type(value) is type(default):
        return value
    if isinstance(default, float) and not isinstance(value, bool):
        if isinstance(value, int):
            try:
                return float(value)
            except OverflowError:
                raise ConfigError(f"{full_key}: {shown(value)} is too large for a number") from None
        if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", ".inf", "infinity"):
            return math.inf
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    raise ConfigError(f"{full_key}: expected a {type(default).__name__} like {default!r}, got {shown(value)}")


def _unknown_key_message(node: dict, key: str, full_key: str, root: Optional[dict] = None,
                         whole_key: Optional[str] = None) -> str:
    whole_key = str(whole_key or full_key)
    if root is not None and _has_key(root, whole_key.upper()):  # solver.optimizer.base_lr
        return f"unknown config key {whole_key}; did you mean {whole_key.upper()}? (config keys are upper case)"
    if str(key).upper() in node:  # a lower-case key in a YAML file
        return f"unknown config key {full_key}; did you mean {str(key).upper()}? (config keys are upper case)"
    close = difflib.get_close_matches(str(key), [str(k) for k in node.keys()], n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown config key {full_key}{hint}"


def _has_key(root: dict, full_key: str) -> bool:
    node: Any = root
    for name in full_key.split("."):
        if not isinstance(node, dict) or name not in node:
            return False
        node = node[name]
    return True



def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def shown(value: Any, limit: int = 200) -> str:
    """`repr(value)` for an error message, cut to `limit` characters (a value can be large: a list of thousands)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
