"""Schedule preview: every group's lr (and momentum / weight decay where scheduled) over a whole run.

The values come from the run's own schedulers, stepped once per iteration without any training, so a preview
shows exactly what training will use.
"""
from typing import Dict, List

from pet.solver.run_optimizers import SolverUnit


def schedule_curves(units: List[SolverUnit], max_iter: int) -> Dict[str, Dict[str, List[float]]]:
    """{"lr" | "momentum" | "weight_decay": {curve name: value at iterations 0 .. max_iter - 1}}.

    Momentum and weight decay appear only for the units whose scheduler changes them. The schedulers are
    stepped, so pass units built for the preview, not those of a run in progress.
    """
    curves: Dict[str, Dict[str, List[float]]] = {"lr": {}}
    for unit in units:
        for field in unit.scheduler.fields:
            curves.setdefault(field.name, {})
    for _ in range(max_iter):
        for unit in units:
            scheduled = [field.name for field in unit.scheduler.fields]
            for name, group in zip(unit.group_labels(), unit.optimizer.param_groups):
                curves["lr"].setdefault(name, []).append(group["lr"])
                if "momentum" in scheduled:
                    value = group["betas"][0] if "betas" in group else group["momentum"]
                    curves["momentum"].setdefault(name, []).append(value)
                if "weight_decay" in scheduled:
                    curves["weight_decay"].setdefault(name, []).append(group["weight_decay"])
            unit.scheduler.step()
    return curves
