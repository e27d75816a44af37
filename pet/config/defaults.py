"""The root config: every default of the project, cloned by `get_cfg()`."""
from pet.config.node import CfgNode
from pet.config.solver import solver_defaults

_C = CfgNode()
# Where a run writes checkpoints, metrics.json and TensorBoard files.
_C.OUTPUT_DIR = "output"
_C.SOLVER = solver_defaults()


def get_cfg() -> CfgNode:
    """Return a fresh, mutable clone of the defaults; callers may merge files and overrides into it."""
    return _C.clone()
