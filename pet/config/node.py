"""A yacs CfgNode whose merges are strict and whose every failure is a `ConfigError`.

yacs itself raises `KeyError`, `AssertionError` or `ValueError` depending on where a merge fails, and rejects
`BASE_LR: 1` (int for a float key). This node accepts the harmless cases (int for float, list for tuple,
"inf" for a float) and turns everything else into one `ConfigError` that names the full key.
"""
import difflib
import math
from typing import Any, Iterable

import yaml
from yacs.config import CfgNode as _YacsCfgNode

from pet.errors import ConfigError


class CfgNode(_YacsCfgNode):
    """yacs CfgNode with strict, well-reported merges from YAML files, other nodes and key/value lists."""

    def merge_from_file(self, cfg_filename: str) -> None:
        """Merge a YAML file into this node; a missing, unreadable or malformed file is a `ConfigError`."""
        try:
            with open(cfg_filename, encoding="utf-8") as f:
                loaded = yaml.load(f, Loader=UniqueKeyLoader)
        except OSError as e:
            raise ConfigError(f"cannot read config file {cfg_filename}: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {cfg_filename} is not UTF-8 text (byte {e.start})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {cfg_filename} is not valid YAML: {_one_line(e)}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {cfg_filename} must hold a mapping of keys, got {type(loaded).__name__}")
        _merge_dict(loaded, self, prefix="")

    def merge_from_other_cfg(self, cfg_other: _YacsCfgNode, prefix: str = "") -> None:
        """Merge another node (or plain dict) into this one, with the same checks as a file; errors name keys
        as `prefix` + key (e.g. `SOLVER.OPTIMIZERS.head.` for a node laid over SOLVER.OPTIMIZER's copy)."""
        _merge_dict(cfg_other, self, prefix=prefix)

    def merge_from_list(self, cfg_list: Iterable[Any]) -> None:
        """Merge `[KEY, VALUE, KEY, VALUE, ...]` (e.g. from the command line) into this node."""
        items = list(cfg_list)
        if len(items) % 2:
            raise ConfigError(f"config overrides must be KEY VALUE pairs; got an odd number of items: {items}")
        for full_key, raw in zip(items[0::2], items[1::2]):
            *parents, leaf = str(full_key).split(".")
            node = self
            for depth, name in enumerate(parents):
                node = _child_node(node, name, ".".join(parents[: depth + 1]))
            value = self._decode_cfg_value(raw)
            if leaf not in node and node.is_new_allowed():
                node[leaf] = value  # checked when the open node is read (e.g. SOLVER.OPTIMIZERS.<name>)
                continue
            if leaf not in node:
                raise ConfigError(_unknown_key_message(node, leaf, full_key))
            node[leaf] = _coerce(value, node[leaf], full_key)


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key twice in one mapping is an error: PyYAML keeps the last one, so a
    second `SOLVER:` would silently drop the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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
                raise ConfigError(f"{full_key} is a group of keys; expected a mapping, got {raw!r}")
            _merge_dict(raw, target[key], prefix=f"{full_key}.")
        else:
            target[key] = _coerce(CfgNode._decode_cfg_value(raw), target[key], full_key)


def _child_node(node: CfgNode, name: str, full_key: str) -> CfgNode:
    if name not in node and node.is_new_allowed():
        node[name] = CfgNode(new_allowed=True)
    if name not in node:
        raise ConfigError(_unknown_key_message(node, name, full_key))
    if not isinstance(node[name], _YacsCfgNode):
        raise ConfigError(f"{full_key} is a value, not a group of keys")
    return node[name]


def _coerce(value: Any, default: Any, full_key: str) -> Any:
    """Return `value` converted to the type of `default`, or raise a `ConfigError` naming the key."""
    if isinstance(default, _YacsCfgNode):
        raise ConfigError(f"{full_key} is a group of keys; it cannot be set to {value!r}")
    if isinstance(value, dict):
        raise ConfigError(f"{full_key} is a value; it cannot be set to the mapping {dict(value)!r}")
    if value is None or default is None or type(value) is type(default):
        return value
    if isinstance(default, float) and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", ".inf", "infinity"):
            return math.inf
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    raise ConfigError(f"{full_key}: expected a {type(default).__name__} like {default!r}, got {value!r}")


def _unknown_key_message(node: dict, key: str, full_key: str) -> str:
    close = difflib.get_close_matches(str(key), [str(k) for k in node.keys()], n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown config key {full_key}{hint}"


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
