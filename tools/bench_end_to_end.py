"""End-to-end speed: `tools/train_net.py` on shipped configs against a hand-written torch loop and MMEngine's Runner.

    python tools/bench_end_to_end.py [--rounds 2] [--jobs digits shapes] [--out FILE]

Jobs (each shortened so that a round fits in minutes on 2 CPU cores; every other key as shipped):
- digits: `cfgs/digits/resnet18_sgd_step.yaml`, 300 updates (STEPS 200, 260), the default keys otherwise;
- shapes: `cfgs/shapes/fcos_resnet18_sgd_cosine.yaml`, 60 updates (warmup 10), full-model clipping at 10.

Variants, each run in a fresh process, in rotation over the rounds (machine noise falls on all alike):
- train_net: `tools/train_net.py --cfg <job>` as a user runs it (evaluations, checkpoints, writers, guard);
- hand: a hand-written loop: the same model, data set, batch order and hyperparameters, fused SGD with the same
  two groups (norm parameters and biases without decay), `LambdaLR` with the same warmup and decay written out
  by hand, torch's own `clip_grad_norm_` where the job clips, no non-finite guard; its final evaluation and
  checkpoint are timed like train_net's;
- hand+keep: the hand loop with the glibc setting train_net applies on CPU (TRAIN.KEEP_FREED_MEMORY);
- mmengine: MMEngine's `Runner` on the same model and data, `paramwise_cfg` (norm and bias decay 0), LinearLR
  warmup and MultiStepLR / CosineAnnealingLR, its `clip_grad` where the job clips (when MMEngine is importable:
  `pip install -e .[bench]`).

Per-update medians come from each process's own per-iteration times (train_net: the `time` rows of metrics.json,
at its writer period); whole-run times are the processes' wall times, start-up included.
A cProfile of the digits job through the trainer gives the table of where an update's time goes.
"""
import cProfile
import datetime
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")


@dataclass(frozen=True)
class Job:
    cfg: str
    overrides: Tuple[str, ...]


JOBS = {
    "digits": Job("cfgs/digits/resnet18_sgd_step.yaml",
                  ("SOLVER.SCHEDULER.TOTAL_ITERS", "300", "SOLVER.SCHEDULER.STEPS", "(200, 260)")),
    "shapes": Job("cfgs/shapes/fcos_resnet18_sgd_cosine.yaml",
                  ("SOLVER.SCHEDULER.TOTAL_ITERS", "60", "SOLVER.SCHEDULER.WARM_UP_ITERS", "10")),
}
VARIANTS = ["train_net", "hand", "hand+keep", "mmengine"]


def job_cfg(job: Job, output_dir: str) -> Any:
    from pet.engine.runs.cli import load_config

    return load_config(os.path.join(ROOT, job.cfg), list(job.overrides) + ["OUTPUT_DIR", output_dir])


# ------------------------------------------------------------------------------------ the hand-written loop
def warmup_then_decay(cfg: Any):
    """The job's lr multiplier of update k, written out by hand (linear warmup, then STEP or COSINE)."""
    sched = cfg.SOLVER.SCHEDULER
    warmup, start, total, steps = sched.WARM_UP_ITERS, sched.WARM_UP_FACTOR, sched.TOTAL_ITERS, list(sched.STEPS)

    def factor(k: int) -> float:
        rise = start * (1 - k / warmup) + k / warmup if k < warmup else 1.0
        if sched.POLICY == "COSINE":
            return rise * 0.5 * (1 + math.cos(math.pi * min(k, total) / total))
        return rise * sched.GAMMA ** sum(k >= s for s in steps)
    return factor


def two_groups(model: Any, weight_decay: float) -> List[Dict[str, Any]]:
    """Norm-layer parameters and biases without decay, everything else with it."""
    import torch

    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            (no_decay if isinstance(module, norms) or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def setup(cfg: Any):
    """The model, data and batch order train_net builds for `cfg` (same seeds), with pet's builders."""
    from pet.data import build_dataset, build_train_loader
    from pet.engine.runs.runner import seed_everything
    from pet.engine.evaluation.tasks import task_of
    from pet.models import build_model

    seed_everything(cfg.SEED)
    task = task_of(cfg)
    train_set, val_set = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    model = build_model(cfg)
    seed_everything(cfg.SEED)
    return task, model, build_train_loader(cfg, train_set), val_set


def hand_loop(cfg: Any) -> List[float]:
    """Train as a careful user writes it by hand; return the seconds of each update."""
    import torch
    from pet.data import build_val_loader

    task, model, loader, val_set = setup(cfg)
    opt = cfg.SOLVER.OPTIMIZER
    optimizer = torch.optim.SGD(two_groups(model, opt.WEIGHT_DECAY), lr=opt.BASE_LR, momentum=opt.MOMENTUM, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay(cfg))
    clip = opt.CLIP_GRADIENTS.CLIP_VALUE if opt.CLIP_GRADIENTS.ENABLED else None
    model.train()
    batches, times = iter(loader), []
    for k in range(cfg.SOLVER.SCHEDULER.TOTAL_ITERS):
        start = time.perf_counter()
        loss = sum(task.loss_fn(model, next(batches)).values())
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if (k + 1) % cfg.TRAIN.WRITER_PERIOD == 0:
            loss.item()  # a loop that logs its loss reads it
        times.append(time.perf_counter() - start)
    task.evaluate(model, build_val_loader(cfg, val_set), val_set, torch.device("cpu"))
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
               os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    return times


# -------------------------------------------------------------------------------------------- MMEngine
def mmengine_loop(cfg: Any) -> List[float]:
    """MMEngine's Runner on the same model, data and hyperparameters; return the seconds of each update."""
    import torch
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    from pet.data.sampler import ResumableBatchSampler

    class SizedBatchSampler(ResumableBatchSampler):
        """The same endless batch order; the Runner asks for an epoch length and an inner sampler."""

        sampler = None

        def __len__(self) -> int:
            return self.updates_per_epoch

    task, model, loader, _ = setup(cfg)
    order = loader.batch_sampler
    loader = torch.utils.data.DataLoader(loader.dataset, collate_fn=loader.collate_fn, batch_sampler=SizedBatchSampler(
        order.dataset_size, order.batch_size, seed=order.seed))
    stamps: List[float] = []

    class Stamp(Hook):
        priority = "LOWEST"

        def before_train(self, runner: Any) -> None:
            stamps.append(time.perf_counter())

        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
            stamps.append(time.perf_counter())

    class Wrapped(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, *batch: Any, mode: str = "loss") -> Dict[str, torch.Tensor]:
            return {f"loss_{name}": value for name, value in task.loss_fn(self.net, batch).items()}

    opt, sched = cfg.SOLVER.OPTIMIZER, cfg.SOLVER.SCHEDULER
    decay = ([dict(type="MultiStepLR", by_epoch=False, milestones=list(sched.STEPS), gamma=sched.GAMMA)]
             if sched.POLICY == "STEP" else [dict(type="CosineAnnealingLR", by_epoch=False, T_max=sched.TOTAL_ITERS,
                                                  eta_min=0.0)])
    clip = dict(max_norm=opt.CLIP_GRADIENTS.CLIP_VALUE) if opt.CLIP_GRADIENTS.ENABLED else None
    runner = Runner(
        model=Wrapped(), work_dir=cfg.OUTPUT_DIR, train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=opt.BASE_LR, momentum=opt.MOMENTUM,
                                          weight_decay=opt.WEIGHT_DECAY, fused=True), clip_grad=clip,
                           paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0)),
        param_scheduler=[dict(type="LinearLR", start_factor=sched.WARM_UP_FACTOR, by_epoch=False, begin=0,
                              end=sched.WARM_UP_ITERS)] + decay,
        train_cfg=dict(by_epoch=False, max_iters=sched.TOTAL_ITERS),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=cfg.TRAIN.CHECKPOINT_PERIOD,
                                           by_epoch=False),
                           logger=dict(type="LoggerHook", interval=cfg.TRAIN.WRITER_PERIOD)),
        custom_hooks=[Stamp()], launcher="none", randomness=dict(seed=cfg.SEED), log_level="WARNING")
    runner.train()
    return [b - a for a, b in zip(stamps, stamps[1:])]


def mmengine_available() -> bool:
    try:
        import mmengine  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------- one variant
def run_variant(variant: str, job_name: str, output_dir: str) -> Tuple[float, List[float]]:
    """(wall seconds, seconds of each update) of one variant in a fresh process."""
    job = JOBS[job_name]
    if variant == "train_net":
        command = [sys.executable, TRAIN_NET, "--cfg", os.path.join(ROOT, job.cfg), *job.overrides,
                   "OUTPUT_DIR", output_dir]
    else:
        command = [sys.executable, os.path.abspath(__file__), "--variant", variant, "--job", job_name,
                   "--output-dir", output_dir]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{variant} on {job_name} failed:\n{result.stderr[-2000:]}")
    if variant == "train_net":
        rows = [json.loads(line) for line in open(os.path.join(output_dir, "metrics.json"))]
        return wall, [row["time"] for row in rows if "time" in row]
    return wall, json.load(open(os.path.join(output_dir, "times.json")))


def child(variant: str, job_name: str, output_dir: str) -> None:
    """Inside the fresh process of a hand or MMEngine variant: train, write the update times."""
    from pet.engine.runs.allocator import keep_freed_memory

    if variant == "hand+keep":
        keep_freed_memory()
    cfg = job_cfg(JOBS[job_name], output_dir)
    os.makedirs(output_dir, exist_ok=True)
    times = mmengine_loop(cfg) if variant == "mmengine" else hand_loop(cfg)
    json.dump(times, open(os.path.join(output_dir, "times.json"), "w"))


# --------------------------------------------------------------------------------------------- profile
PHASES = [  # (label, function name, file suffix) in cProfile's table; cumulative times, nested ones inside others
    ("update step: data, forward, backward, optimizer", "__call__", "engine/loop/update_step.py"),
    ("  data (next batch)", "__next__", "utils/data/dataloader.py"),
    ("  forward and loss", "classification_losses", "engine/evaluation/tasks.py"),
    ("  backward", "backward", "autograd/__init__.py"),
    ("  optimizer step (hooks and kernel)", "wrapper", "optim/optimizer.py"),
    ("    non-finite guard", "__call__", "solver/optimizers/guard.py"),
    ("    fused SGD kernel", "_fused_sgd", "optim/sgd.py"),
    ("  zero_grad", "zero_grad", "optim/optimizer.py"),
    ("hooks after the step (timer, lr, writers, checkpoints)", "after_step", "engine/loop/hooks.py"),
]


def profile_digits(updates: int = 100) -> List[Tuple[str, float]]:
    """(phase, ms per update) of the digits job through the trainer, from cProfile's cumulative times."""
    from pet.engine.runs.runner import build_run

    with tempfile.TemporaryDirectory() as folder:
        cfg = job_cfg(JOBS["digits"], folder)
        cfg.merge_from_list(["SOLVER.SCHEDULER.TOTAL_ITERS", str(updates), "SOLVER.SCHEDULER.STEPS", "(60, 80)",
                             "TRAIN.EVAL_PERIOD", "0"])
        run = build_run(cfg)
        profiler = cProfile.Profile()
        profiler.enable()
        start = time.perf_counter()
        run.trainer.train(0, updates)
        total = time.perf_counter() - start
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    phases = [("whole update (all hooks)", total)]
    for label, name, suffix in PHASES:
        seconds = sum(value[3] for (path, _, function), value in stats.items()
                      if function == name and path.replace(os.sep, "/").endswith(suffix))
        phases.append((label, seconds))
    return [(label, 1e3 * seconds / updates) for label, seconds in phases]


# ---------------------------------------------------------------------------------------------- report
def markdown(results: Dict[str, Dict[str, List[Tuple[float, List[float]]]]], profile: List[Tuple[str, float]],
             rounds: int, command: str) -> str:
    lines = [f"`{command}` on {datetime.date.today().isoformat()}, {rounds} rounds in fresh processes.", "",
             "| job | variant | per update ms (median) | whole run s (median) | update / hand | run / hand |",
             "|---|---|---|---|---|---|"]
    for job, variants in results.items():
        medians = {v: statistics.median([statistics.median(times) for _, times in runs]) for v, runs in variants.items()}
        walls = {v: statistics.median([wall for wall, _ in runs]) for v, runs in variants.items()}
        for variant in variants:
            lines.append(f"| {job} | {variant} | {medians[variant] * 1e3:.1f} | {walls[variant]:.1f} | "
                         f"{medians[variant] / medians['hand']:.3f} | {walls[variant] / walls['hand']:.3f} |")
    lines += ["", "Where an update of the digits job goes (cProfile, cumulative, through the trainer):", "",
              "| part | ms per update | share |", "|---|---|---|"]
    whole = profile[0][1]
    lines += [f"| {label} | {ms:.2f} | {100 * ms / whole:.1f}% |" for label, ms in profile]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> str:
    import argparse

    from pet.engine.runs.cli import write_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", nargs="+", choices=sorted(JOBS), default=sorted(JOBS))
    parser.add_argument("--out", default=os.path.join("output", "benchmarks-end-to-end.md"))
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        child(args.variant, args.job, args.output_dir)
        return ""
    variants = [v for v in VARIANTS if v != "mmengine" or mmengine_available()]
    results: Dict[str, Dict[str, List[Tuple[float, List[float]]]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for job in args.jobs:
            from pet.data import build_dataset

            build_dataset(job_cfg(JOBS[job], folder), "train")  # the shapes set is written once, before timing
            results[job] = {v: [] for v in variants}
            for round_index in range(args.rounds):
                for variant in variants[round_index % len(variants):] + variants[:round_index % len(variants)]:
                    output_dir = os.path.join(folder, f"{job}-{variant}-{round_index}")
                    results[job][variant].append(run_variant(variant, job, output_dir))
                    wall, times = results[job][variant][-1]
                    print(f"  {job} {variant}: {statistics.median(times) * 1e3:.1f} ms/update, {wall:.1f} s",
                          flush=True)
    report = markdown(results, profile_digits(), args.rounds,
                      "python tools/bench_end_to_end.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    return write_report(args.out, report)


if __name__ == "__main__":
    main()
