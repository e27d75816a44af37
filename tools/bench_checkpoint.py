"""What checkpoints cost a run: `python tools/bench_checkpoint.py [--models resnet18 resnet50] [--rounds 2]`.

Each model trains `--updates` updates on the digits (the default config's keys, batch 32, small-input stem) with
a checkpoint every `--period` updates, three ways, in rotation over the rounds (machine noise falls on all alike):

- none: no checkpoint but the final one;
- sync: every checkpoint written at once, between two updates (TRAIN.ASYNC_CHECKPOINT False);
- async: a copy of the state taken between two updates, written in the background (TRAIN.ASYNC_CHECKPOINT True).

A run's training time is taken from the start of training to the end of its second-to-last update (the final
checkpoint and evaluation, the same in all three, left out), every periodic checkpoint inside it. A variant's
cost per update is its training time minus that of `none` in the same round (paired: the machine's drift between
rounds cancels), over those updates, given in ms and as a share of the update time of `none`. Medians over the
rounds.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CFG = os.path.join(ROOT, "cfgs", "digits", "resnet18_sgd_step.yaml")
VARIANTS = {"none": None, "sync": False, "async": True}


def train_seconds(model: str, updates: int, period: Optional[int], background: bool) -> float:
    """Wall time of one run's training up to the end of its second-to-last update (built first, not timed)."""
    from pet.engine.loop.hooks import HookBase
    from pet.engine.runs.cli import load_config
    from pet.engine.runs.runner import build_run

    class Clock(HookBase):
        def before_train(self) -> None:
            self.start, self.end = time.perf_counter(), 0.0

        def after_step(self) -> None:
            if self.trainer.iter == self.trainer.max_iter - 2:
                self.end = time.perf_counter()

    with tempfile.TemporaryDirectory() as folder:
        cfg = load_config(DEFAULT_CFG, [
            "OUTPUT_DIR", folder, "MODEL.NAME", model, "SOLVER.SCHEDULER.TOTAL_ITERS", str(updates),
            "SOLVER.SCHEDULER.STEPS", f"({updates - 1},)", "SOLVER.SCHEDULER.WARM_UP_ITERS", "5",
            "TRAIN.CHECKPOINT_PERIOD", str(period or 10 ** 9), "TRAIN.ASYNC_CHECKPOINT", str(background),
            "TRAIN.WRITER_PERIOD", "1000", "TRAIN.CHECKPOINTS_TO_KEEP", "100"])
        run = build_run(cfg)
        clock = Clock()
        run.trainer.register_hooks([clock])  # last: after the checkpoint hooks of the same update
        run.train()
        return clock.end - clock.start


def measure(models: List[str], updates: int, period: int, rounds: int) -> Dict[str, Dict[str, List[float]]]:
    """{model: {variant: [seconds per round]}}, the variants in rotation."""
    results: Dict[str, Dict[str, List[float]]] = {model: {name: [] for name in VARIANTS} for model in models}
    for round_index in range(rounds):
        for model in models:
            names = list(VARIANTS)[round_index % 3:] + list(VARIANTS)[:round_index % 3]
            for name in names:
                seconds = train_seconds(model, updates, period if VARIANTS[name] is not None else None,
                                        bool(VARIANTS[name]))
                results[model][name].append(seconds)
                print(f"round {round_index + 1} {model} {name}: {seconds:.2f} s", file=sys.stderr)
    return results


def report(results: Dict[str, Dict[str, List[float]]], updates: int, period: int, rounds: int) -> str:
    lines = [f"`python tools/bench_checkpoint.py` ({updates} updates, a checkpoint every {period}, {rounds} rounds, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads)", "",
             "| model | update ms (none) | sync: cost per update ms | sync: share | async: cost per update ms "
             "| async: share |", "|---|---|---|---|---|---|"]
    for model, times in results.items():
        update = statistics.median(times["none"]) / (updates - 1) * 1000
        cells = []
        for name in ("sync", "async"):
            cost = statistics.median(t - n for t, n in zip(times[name], times["none"])) / (updates - 1) * 1000
            cells += [f"{cost:.2f}", f"{cost / update:.1%}"]
        lines.append(f"| {model} | {update:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> str:
    from pet.engine.runs.cli import write_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--period", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=os.path.join("output", "benchmarks-checkpoint.md"))
    args = parser.parse_args(argv)
    results = measure(args.models, args.updates, args.period, args.rounds)
    return write_report(args.out, report(results, args.updates, args.period, args.rounds))


if __name__ == "__main__":
    main()
