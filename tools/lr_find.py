"""Find a base lr for a config: `python tools/lr_find.py --cfg FILE [KEY VALUE ...] [--start 1e-7] [--end 10]`.

Runs the config's training (model, data, param groups, clipping, AMP; under torchrun too) with
SOLVER.OPTIMIZER.BASE_LR rising exponentially from --start to --end over --iters updates, stops when the smoothed
loss exceeds 4x its best, and suggests the lr where the smoothed loss falls fastest. Writes lr_find.png (loss
against lr) and lr_find.json (the curve) into OUTPUT_DIR, nothing else, and prints the override line to use:
`SOLVER.OPTIMIZER.BASE_LR 0.0xx`.
"""
import json
import math
import os
import sys
from typing import List, Optional

from pet.engine.distributed.process_group import is_main_process, shutdown_distributed
from pet.engine.persistence.output_dir import make_output_dir

from pet.engine.runs.cli import ArgumentParser, CommandLineError, load_config, output_file, run, write_output
from pet.engine.runs.lr_finder import find_lr
from pet.solver.schedules.lr_range import DIVERGENCE_FACTOR, LRSweep

WIDTH_IN, HEIGHT_IN, DPI = 8, 4.5, 100

def plot(sweep: LRSweep, path: str, title: str) -> None:
    """Loss and smoothed loss against the lr (log axis), the suggestion and the stop marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    axis.plot(sweep.lrs, sweep.losses, color="0.75", linewidth=1, label="loss")
    axis.plot(sweep.lrs, sweep.smoothed, color="C0", linewidth=2, label="smoothed loss")
    suggestion = sweep.suggestion()
    if suggestion is not None:
        axis.axvline(suggestion, color="C2", linestyle="--", label=f"suggested base lr {suggestion:.3g}")
    if sweep.diverged:
        axis.axvline(sweep.lrs[-1], color="C3", linestyle=":", label=f"stop: diverged at {sweep.lrs[-1]:.3g}")
    smoothed = [value for value in sweep.smoothed if math.isfinite(value)]
    if smoothed:  # the divergent tail would flatten the rest of the curve
        lowest = min(value for value in sweep.losses + smoothed if math.isfinite(value))
        axis.set_ylim(lowest - 0.1 * abs(lowest), min(max(smoothed), DIVERGENCE_FACTOR * min(smoothed)) * 1.2)
    axis.set_xscale("log")
    axis.set_xlabel("SOLVER.OPTIMIZER.BASE_LR")
    axis.set_ylabel("training loss")
    axis.set_title(title)
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    write_output(path, lambda f: figure.savefig(f, format="png"), "OUTPUT_DIR")
    plt.close(figure)

MAX_ITERS = 100_000  # far more updates than a sweep needs; a larger count is a typo

def check_arguments(start: float, end: float, iters: int) -> None:
    """A sweep needs 0 < start < end (normal floats: below 1e-308 the lr is not a number a step can use) and
    2 to MAX_ITERS updates."""
    if not (sys.float_info.min <= start < end < math.inf):
        raise CommandLineError(f"--start {start} and --end {end}: the sweep needs {sys.float_info.min:.3g} <= start "
                               "< end < inf")
    if not 2 <= iters <= MAX_ITERS:
        raise CommandLineError(f"--iters {iters} must be between 2 and {MAX_ITERS}")

def main(argv: Optional[List[str]] = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True, metavar="FILE", help="YAML config file")
    parser.add_argument("--start", type=float, default=1e-7, help="the first base lr (default 1e-7)")
    parser.add_argument("--end", type=float, default=10.0, help="the last base lr (default 10)")
    parser.add_argument("--iters", type=int, default=100, help="updates of the sweep (default 100)")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides, e.g. TRAIN.BATCH_SIZE 64")
    args = parser.parse_intermixed_args(argv)
    check_arguments(args.start, args.end, args.iters)
    cfg = load_config(args.cfg, args.opts)
    outputs = [output_file(os.path.join(cfg.OUTPUT_DIR, name), "OUTPUT_DIR") for name in ("lr_find.json",
                                                                                           "lr_find.png")]
    try:
        sweep = find_lr(cfg, args.start, args.end, args.iters)
        writes = is_main_process()  # every process took the same decisions; rank 0 writes
    finally:
        shutdown_distributed()
    if not writes:
        return
    make_output_dir(cfg.OUTPUT_DIR)
    write_output(outputs[0], lambda f: f.write(json.dumps(sweep.curve(), indent=1).encode()), "OUTPUT_DIR")
    plot(sweep, outputs[1], f"lr range test: {os.path.basename(args.cfg)}")
    suggestion = sweep.suggestion()
    if suggestion is None and sweep.diverged:
        raise CommandLineError(f"the loss diverged after {len(sweep.lrs)} updates, too early for a suggestion "
                               f"(the curve is in {outputs[1]}); lower --start")
    if suggestion is None:
        raise CommandLineError(f"the sweep ended after {len(sweep.lrs)} updates without a descent to suggest from "
                               f"(the curve is in {outputs[1]}); give more --iters or a wider --start .. --end")
    print(f"Wrote {outputs[1]} and lr_find.json", file=sys.stderr)
    print(f"SOLVER.OPTIMIZER.BASE_LR {suggestion:.3g}")

if __name__ == "__main__":
    sys.exit(run(main))
