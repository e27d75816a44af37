"""Preview a config's schedules without training: `python tools/plot_schedule.py --cfg FILE [KEY VALUE ...]`.

Builds the model and the solver from the config, prints the parameter-group table of every optimizer, and writes
a PNG with the lr of every group over the whole run (plus momentum and weight decay where they are scheduled). The
values come from the run's own schedulers, stepped once per iteration without any training, so the preview shows
exactly what training will use.
"""
import os
import sys
from typing import Any, Dict, List, Optional

from pet.config import optimizer_entries, validate_cfg
from pet.engine.runs.cli import ArgumentParser, CommandLineError, load_config, output_file, run, write_output
from pet.engine.runs.runner import count_updates_per_epoch, seed_everything
from pet.models import build_model
from pet.solver import format_param_groups
from pet.solver.schedules.from_config import uses_epochs
from pet.solver.units import SolverUnit, build_run_solver

TITLES = {"lr": "learning rate", "momentum": "momentum (beta1 for Adam)", "weight_decay": "weight decay"}
WIDTH_IN, ROW_HEIGHT_IN, DPI = 10, 3.5, 100


def iterations_per_epoch(cfg: Any, given: Optional[int], world_size: int) -> int:
    """`given`, or the count from the training set when the config uses epoch units (-1 when it does not)."""
    if given:
        return given
    if not any(uses_epochs(entry.SCHEDULER) for entry in optimizer_entries(cfg.SOLVER).values()):
        return -1
    from pet.data import build_dataset  # only epoch units need the data set (and its folder)

    return count_updates_per_epoch(cfg, len(build_dataset(cfg, "train")), world_size)


def check_arguments(args: Any) -> None:
    """Counts of at least one, and an image format matplotlib writes (it would add `.png` to anything else)."""
    from matplotlib.backend_bases import FigureCanvasBase

    for option, value in (("--world-size", args.world_size), ("--iter-per-epoch", args.iter_per_epoch)):
        if value is not None and value < 1:
            raise CommandLineError(f"{option} = {value} must be at least 1")
    formats = FigureCanvasBase.get_supported_filetypes()
    if args.out is not None:
        output_file(args.out, "--out")
    if args.out and os.path.splitext(args.out)[1].lstrip(".").lower() not in formats:
        raise CommandLineError(f"--out {args.out!r} has no image extension; use one of "
                               f"{', '.join('.' + name for name in sorted(formats))}")


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


def plot(curves: Dict[str, Dict[str, List[float]]], path: str, title: str) -> None:
    """One panel per quantity, one line per group; iterations on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(curves)
    figure, axes = plt.subplots(len(rows), 1, figsize=(WIDTH_IN, ROW_HEIGHT_IN * len(rows)), dpi=DPI, squeeze=False)
    for axis, quantity in zip(axes[:, 0], rows):
        for name, values in curves[quantity].items():
            axis.plot(range(len(values)), values, label=name, linewidth=1.2)
        axis.set_ylabel(TITLES[quantity])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=max(1, len(curves[quantity]) // 12 + 1), loc="best")
    axes[-1, 0].set_xlabel("iteration")
    axes[0, 0].set_title(title)
    figure.tight_layout()
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    write_output(path, lambda f: figure.savefig(f, format=extension, dpi=DPI), "--out")  # never through a link
    plt.close(figure)


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, List[float]]]:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True, metavar="FILE", help="YAML config file")
    parser.add_argument("--out", metavar="PNG", help="output image (default: OUTPUT_DIR/schedule.png)")
    parser.add_argument("--iter-per-epoch", type=int, metavar="N", help="for epoch units, instead of the data set")
    parser.add_argument("--world-size", type=int, default=1, metavar="N", help="processes of the planned run")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    check_arguments(args)
    cfg = load_config(args.cfg, args.opts)
    validate_cfg(cfg)
    seed_everything(cfg.SEED)
    ipe = iterations_per_epoch(cfg, args.iter_per_epoch, args.world_size)
    units, max_iter = build_run_solver(build_model(cfg), cfg, ipe, args.world_size)
    for unit in units:
        print(f"Parameter groups{' of ' + unit.name if unit.name else ''}:")
        print(format_param_groups(unit.optimizer))
    curves = schedule_curves(units, max_iter)
    out = output_file(args.out or os.path.join(cfg.OUTPUT_DIR, "schedule.png"), "--out")
    plot(curves, out, f"{os.path.basename(args.cfg)}: {max_iter} iterations")
    print(f"Wrote {out}")
    return curves


if __name__ == "__main__":
    sys.exit(run(main))
