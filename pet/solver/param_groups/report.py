"""The parameter-group report printed before training: one row per group."""
import torch


def format_param_groups(optimizer: torch.optim.Optimizer) -> str:
    """A fixed-width table of the optimizer's groups: name, tensors, parameters, lr, weight decay."""
    rows = [("group", "tensors", "parameters", "lr", "weight_decay")]
    for index, group in enumerate(optimizer.param_groups):
        rows.append((
            str(group.get("name", index)),
            str(len(group["params"])),
            f"{sum(p.numel() for p in group['params']):,}",
            f"{group.get('initial_lr', group['lr']):.6g}",
            f"{group.get('weight_decay', 0.0):.6g}",
        ))
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if col == 0 else cell.rjust(w) for col, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join(lines)
