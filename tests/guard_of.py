"""The gradient guard a built optimizer carries as a step pre-hook, for tests that drive the optimizer by hand."""
import torch

from pet.solver import GradientGuard


def guard_of(optimizer: torch.optim.Optimizer) -> GradientGuard:
    """The `GradientGuard` registered on `optimizer` (the test fails where there is none)."""
    guards = [hook for hook in optimizer._optimizer_step_pre_hooks.values() if isinstance(hook, GradientGuard)]
    assert len(guards) == 1, f"{len(guards)} gradient guards on the optimizer"
    return guards[0]
