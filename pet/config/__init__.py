"""Configuration: `get_cfg()` (the defaults from the key tables), strict merges, and validation."""
from pet.config.defaults import get_cfg
from pet.config.ignored import ignored_keys
from pet.config.named_optimizers import optimizer_entries
from pet.config.node import CfgNode
from pet.config.validation import validate_cfg, validate_optimizer_cfg, validate_scheduler_cfg, validate_solver_cfg
from pet.errors import ConfigError

__all__ = [
    "CfgNode",
    "ConfigError",
    "get_cfg",
    "ignored_keys",
    "optimizer_entries",
    "validate_cfg",
    "validate_optimizer_cfg",
    "validate_scheduler_cfg",
    "validate_solver_cfg",
]
