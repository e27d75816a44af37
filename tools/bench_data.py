"""Which bounds a run, the data or the model: `python tools/bench_data.py --cfg FILE [--workers 0 2] [KEY VALUE ...]`.

Times the config's training loader alone (reading, decoding and augmenting in DATA.NUM_WORKERS processes, for each
--workers count) and the model's update alone (forward, backward and optimizer step on one batch held in memory),
both in images per second, and says which is the bottleneck. The loader's start-up (its workers' first batch) is
not timed: persistent workers pay it once per run. Writes nothing but the report (--out).
"""
import itertools
import statistics
import sys
import time
from typing import Any, Dict, List, Optional

from pet.engine.runs.cli import ArgumentParser, CommandLineError, load_config, run, write_report

MAX_WORKERS = 64


def loader_rate(cfg: Any, dataset: Any, workers: int, batches: int) -> float:
    """Images per second of the training loader with `workers` worker processes, after its first batch."""
    from pet.data import build_train_loader

    cfg = cfg.clone()
    cfg.DATA.NUM_WORKERS = workers
    stream = iter(build_train_loader(cfg, dataset))
    next(stream)  # the workers' start-up
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * cfg.TRAIN.BATCH_SIZE / (time.perf_counter() - start)


def update_rate(cfg: Any, updates: int) -> float:
    """Images per second of the model's update on one batch of the training set held in memory (the median of
    `updates` timed updates, after two untimed ones)."""
    from pet.data import build_train_loader
    from pet.engine.loop.update_step import UpdateStep
    from pet.engine.runs.runner import build_setup

    setup = build_setup(cfg)
    batch = next(iter(build_train_loader(cfg, setup.data.train_set)))
    step = UpdateStep(setup.step_model(), setup.data.task.loss_fn, setup.solver.units, setup.device,
                      **setup.step_options(cfg))
    batches = itertools.repeat(batch)
    seconds = []
    for iteration in range(updates + 2):
        start = time.perf_counter()
        step(batches, iteration).total.item()
        seconds.append(time.perf_counter() - start)
    return cfg.TRAIN.BATCH_SIZE * cfg.SOLVER.ACCUMULATION.STEPS / statistics.median(seconds[2:])


def report(cfg_file: str, loader: Dict[int, float], update: float) -> str:
    """The markdown table and the verdict."""
    lines = [f"`{cfg_file}`: images per second", "", "| part | images / s |", "|---|---|"]
    lines += [f"| loader, DATA.NUM_WORKERS {w} | {rate:.0f} |" for w, rate in loader.items()]
    lines.append(f"| model update | {update:.0f} |")
    best_workers, best = max(loader.items(), key=lambda item: item[1])
    if best < update:
        verdict = (f"the loader is the bottleneck: {best:.0f} images/s at best ({best_workers} workers) against "
                   f"{update:.0f} for the update; more workers, or lighter decoding, would speed the run up")
    else:
        slowest = min(w for w, rate in loader.items() if rate >= update)
        verdict = (f"the model is the bottleneck: DATA.NUM_WORKERS {slowest} already gives "
                   f"{loader[slowest]:.0f} images/s, the update takes {update:.0f}")
    return "\n".join(lines + ["", verdict]) + "\n"


def main(argv: Optional[List[str]] = None) -> str:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True, metavar="FILE", help="YAML config file")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], metavar="N",
                        help="DATA.NUM_WORKERS values to time the loader with")
    parser.add_argument("--batches", type=int, default=30, metavar="N", help="loader batches timed per count")
    parser.add_argument("--updates", type=int, default=10, metavar="N", help="model updates timed")
    parser.add_argument("--out", default="output/bench_data.md", metavar="FILE", help="markdown report")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    if not all(0 <= w <= MAX_WORKERS for w in args.workers):
        raise CommandLineError(f"--workers {args.workers}: each count must be in [0, {MAX_WORKERS}]")
    for option, value in (("--batches", args.batches), ("--updates", args.updates)):
        if not 1 <= value <= 10_000:
            raise CommandLineError(f"{option} = {value} must be in [1, 10000]")
    cfg = load_config(args.cfg, args.opts)
    from pet.config import validate_cfg
    from pet.data import build_dataset
    from pet.engine.distributed.process_group import shutdown_distributed

    validate_cfg(cfg)
    dataset = build_dataset(cfg, "train")
    loader = {}
    for workers in args.workers:
        loader[workers] = loader_rate(cfg, dataset, workers, args.batches)
        print(f"  loader, {workers} workers: {loader[workers]:.0f} images/s", flush=True)
    try:
        update = update_rate(cfg, args.updates)
    finally:
        shutdown_distributed()
    print(f"  model update: {update:.0f} images/s", flush=True)
    text = report(args.cfg, loader, update)
    print(text.splitlines()[-1])
    return write_report(args.out, text)


if __name__ == "__main__":
    sys.exit(run(main))
