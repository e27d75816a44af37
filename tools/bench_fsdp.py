"""Benchmark one solver iteration under FSDP2 with 2 processes (gloo on CPU, nccl on GPUs), interleaved, in one run.

    python tools/bench_fsdp.py [--quick] [--models NAME ...] [--out FILE]

One iteration = gradient clipping + `optimizer.step()` + the lr update on sharded parameters (random gradients,
no forward pass), AdamW with Pet's rules (norm / bias / backbone groups) and full-model clipping at 1.0:

- ours: `Optimizer(...).build()` + `LearningRateScheduler` on the sharded model (merged groups, fused AdamW, the
  global norm from one all-reduce of the shards' norms);
- bare: torch alone: fused AdamW with one param group, `torch.nn.utils.clip_grad_norm_` on the DTensor gradients,
  the lr written into the group.

Both variants run in every process, in rotation; each sample starts after a barrier, and the table holds the
medians of process 0 and their ratio.
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import distribute_tensor

from pet.config import get_cfg
from pet.engine.distributed.fsdp import device_mesh, shard_model
from pet.models import build_classifier
from pet.solver import LearningRateScheduler, Optimizer

FULL_MODELS = ["resnet50", "vit_b_16"]
QUICK_MODELS = ["mobilenet_v3_small"]
PROCESSES = 2
KEYS = ["SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.BASE_LR", 0.001, "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR",
        0.1, "SOLVER.OPTIMIZER.BIAS_LR_FACTOR", 2.0, "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.05,
        "SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True, "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 1.0]


def sharded_model(name: str, device: torch.device) -> nn.Module:
    """The torchvision classifier, sharded over all processes, with random gradients on its shards."""
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.NAME", name, "MODEL.NUM_CLASSES", 1000, "DATA.IMAGE_SIZE", 224])
    torch.manual_seed(0)
    model = shard_model(build_classifier(cfg).to(device), device_mesh(device, dist.get_world_size()))
    for p in model.parameters():  # the same full gradient in every process, each holding its shard
        full = torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 1e-2
        p.grad = distribute_tensor(full.to(device), p.device_mesh, p.placements)
    return model


def ours(model: nn.Module) -> Callable[[], None]:
    cfg = get_cfg()
    cfg.merge_from_list(KEYS)
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    scheduler = LearningRateScheduler(optimizer, cfg.SOLVER)

    def step() -> None:
        optimizer.step()
        scheduler.step()
    return step


def bare(model: nn.Module) -> Callable[[], None]:
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=0.001, weight_decay=0.05, fused=True)
    group, count = optimizer.param_groups[0], [0]

    def step() -> None:
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        count[0] += 1
        group["lr"] = 0.001 * min(1.0, 0.1 + 0.9 * count[0] / 500)  # the warmup, written out
    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()


def interleaved(steps: Dict[str, Callable[[], None]], device: torch.device, repeats: int) -> Dict[str, float]:
    """Median seconds per call of each step, in rotation, every sample started together by all processes."""
    names = list(steps)
    for name in names:
        steps[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            synchronize(device)
            start = time.perf_counter()
            steps[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def worker(rank: int, store: str, models: List[str], repeats: int, results: str) -> None:
    """One of the processes: time both variants on every model; process 0 saves the medians to `results`."""
    cuda = torch.cuda.device_count() >= PROCESSES
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{store}", rank=rank,
                            world_size=PROCESSES)
    rows = []
    for name in models:
        variants = {"ours": ours(sharded_model(name, device)), "bare": bare(sharded_model(name, device))}
        median = interleaved(variants, device, repeats)
        rows.append(dict(model=name, **median))
        if rank == 0:
            print(f"  FSDP {name}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in median.items()), flush=True)
    if rank == 0:
        torch.save(rows, results)
    dist.destroy_process_group()


def markdown(rows: List[dict], command: str, device: str) -> str:
    lines = [f"### FSDP2, {PROCESSES} processes on {device}", "",
             f"`{command}` on {datetime.date.today().isoformat()}; AdamW, Pet's groups, full-model clipping at 1.0.",
             "", "| model | ours ms | bare FSDP2 ms | ours / bare |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['ours'] * 1e3:.2f} | {r['bare'] * 1e3:.2f} | {r['ours'] / r['bare']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> str:
    from pet.engine.runs.cli import ArgumentParser, write_report

    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small model, few repeats (for tests)")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="torchvision models (default: resnet50, vit_b_16)")
    parser.add_argument("--repeats", type=int, help="timed rounds per variant")
    parser.add_argument("--out", default=os.path.join("output", "benchmarks-fsdp.md"), metavar="FILE",
                        help="markdown file for the results")
    parser.add_argument("--worker", nargs=3, metavar=("RANK", "STORE", "RESULTS"), help=argparse.SUPPRESS)  # how main starts its processes
    args = parser.parse_args(argv)
    models = args.models or (QUICK_MODELS if args.quick else FULL_MODELS)
    repeats = args.repeats or (3 if args.quick else 21)
    if args.worker:
        rank, store, results = args.worker
        worker(int(rank), store, models, repeats, results)
        return ""
    with tempfile.TemporaryDirectory() as folder:
        results, store = os.path.join(folder, "rows.pt"), os.path.join(folder, "store")
        command = [sys.executable, os.path.abspath(__file__), "--models", *models, "--repeats", str(repeats)]
        workers = [subprocess.Popen([*command, "--worker", str(rank), store, results],
                                    env=dict(os.environ, OMP_NUM_THREADS="1")) for rank in range(PROCESSES)]
        if any(process.wait() for process in workers):
            raise RuntimeError("a benchmark process failed (its error is above)")
        rows = torch.load(results, weights_only=True)
    device = "GPUs" if torch.cuda.device_count() >= PROCESSES else "CPU (gloo)"
    command = "python tools/bench_fsdp.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = markdown(rows, command.strip(), device)
    return write_report(args.out, report)


if __name__ == "__main__":
    from pet.engine.runs.cli import run

    sys.exit(run(main))
