"""The parameter-group report printed before training (one row per group), and the names groups are known by in
logs, metrics and checkpoints."""
from typing import List

import torch


def group_names(optimizer: torch.optim.Optimizer) -> List[str]:
    """Each param group's `name`, or its index where a group has none (a hand-built optimizer)."""
    return [str(group.get("name", index)) for index, group in enumerate(optimizer.param_groups)]


def format_param_groups(optimizer: torch.optim.Optimizer) -> str:
    """A fixed-width table of the optimizer's groups: name, tensors, parameters, lr, weight decay."""
    rows = [("group", "tensors", "parameters", "lr", "weight_decay")]
    for name, group in zip(group_names(optimizer), optimizer.param_groups):
        rows.append((
            name,
            str(len(group["params"])),
            f"{sum(p.numel() for p in group['params']):,}",
            f"{group.get('initial_lr', group['lr']):.6g}",
            f"{group.get('weight_decay', 0.0):.6g}",
        ))
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if col == 0 else cell.rjust(w) for col, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join(lines)
