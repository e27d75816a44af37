"""The root config: every default of the project, from the key tables, cloned by `get_cfg()`."""
from pet.config.node import CfgNode
from pet.config.run_keys import RUN
from pet.config.schema import Section, defaults_node
from pet.config.solver_keys import SOLVER

ROOT: Section = {**RUN, "SOLVER": SOLVER}

_C = defaults_node(ROOT)


def get_cfg() -> CfgNode:
    """Return a fresh, mutable clone of the defaults; callers may merge files and overrides into it.

    Example:
        >>> cfg = get_cfg()
        >>> cfg.merge_from_file("cfgs/digits/resnet18_sgd_step.yaml")
        >>> cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", "0.1"])
    """
    return _C.clone()
