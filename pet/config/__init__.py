"""Configuration: `get_cfg()` (yacs defaults), `ConfigError`, and validation of the SOLVER tree."""
from pet.config.errors import ConfigError
from pet.config.defaults import get_cfg
from pet.config.node import CfgNode
from pet.config.optimizers import optimizer_entries
from pet.config.validation import (validate_cfg, validate_optimizer_cfg, validate_scheduler_cfg,
                                   validate_solver_cfg)

__all__ = [
    "CfgNode",
    "ConfigError",
    "get_cfg",
    "optimizer_entries",
    "validate_cfg",
    "validate_optimizer_cfg",
    "validate_scheduler_cfg",
    "validate_solver_cfg",
]
