"""Declarative config tables: each key's default, the rule its value must follow, and its one-line meaning.

A section is a mapping of key -> `Key` (a leaf), a nested section, or `OpenSection` (entries the user names, such
as SOLVER.OPTIMIZERS). From the same tables come the defaults (`defaults_node`), the per-key validation
(`check_section`) and the key tables of both READMEs (`pet.config.readme_tables`), so none of them can drift.
"""
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Tuple, Union

from pet.config.node import CfgNode, shown
from pet.config.rules import Rule
from pet.errors import ConfigError


@dataclass(frozen=True)
class Key:
    """A leaf of the config: its default, its rule, and the meaning the README gives it."""

    default: Any
    rule: Rule
    help: str


@dataclass(frozen=True)
class OpenSection:
    """A node whose entries the user names (checked where they are read); empty by default."""

    help: str


Section = Dict[str, Union[Key, OpenSection, "Section"]]


def defaults_node(section: Section) -> CfgNode:
    """A fresh CfgNode holding every default of `section`."""
    node = CfgNode()
    for name, entry in section.items():
        if isinstance(entry, Key):
            node[name] = entry.default
        elif isinstance(entry, OpenSection):
            node[name] = CfgNode(new_allowed=True)
        else:
            node[name] = defaults_node(entry)
    return node


def leaves(section: Section, prefix: str = "") -> Iterator[Tuple[str, Union[Key, OpenSection]]]:
    """(full key, Key or OpenSection) of every leaf of `section`, in table order."""
    for name, entry in section.items():
        if isinstance(entry, (Key, OpenSection)):
            yield prefix + name, entry
        else:
            yield from leaves(entry, f"{prefix}{name}.")


def invalid_value(full_key: str, value: Any, allowed: str) -> str:
    """The one-line message for a key whose value is not allowed."""
    return f"{full_key} = {shown(value)} is invalid; allowed: {allowed}"


def check_section(node: Any, section: Section, prefix: str) -> None:
    """Raise `ConfigError` for the first key of `node` that is unknown, missing or outside its allowed values,
    recursing into nested sections (open sections are left to their readers)."""
    dot = f"{prefix}." if prefix else ""
    for name in node.keys():
        if name not in section:
            raise ConfigError(f"unknown config key {dot}{name}")
    for name, entry in section.items():
        if name not in node:
            raise ConfigError(f"missing config key {dot}{name}")
        if isinstance(entry, Key):
            if not entry.rule.check(node[name]):
                raise ConfigError(invalid_value(f"{dot}{name}", node[name], entry.rule.allowed))
        elif not isinstance(entry, OpenSection):
            check_section(node[name], entry, f"{dot}{name}")
