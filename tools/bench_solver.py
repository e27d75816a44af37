"""Benchmark one solver iteration against bare torch, a Pet-style solver and MMEngine, interleaved, in one run.

    python tools/bench_solver.py [--quick] [--device cpu|cuda] [--out docs/benchmarks.md]

One iteration = gradient clipping + `optimizer.step()` + the lr update, on random gradients (no forward pass),
with Pet's rules active: norm / bias / backbone groups, full-model clipping at 1.0, STEP with linear warmup.

- ours: `Optimizer(...).build()` + `LearningRateScheduler` (merged groups, automatic fused kernels).
- bare: the reference limit: one param group, torch's fastest kernels (fused), `clip_grad_norm_`, the lr set
  directly in the group.
- pet: one group per parameter, Python-loop clipping, torch's default kernels, a torch `LambdaLR`.
- mmengine: `OptimWrapper` with `paramwise_cfg` and `clip_grad`, and MMEngine's parameter schedulers
  (when MMEngine is installed: `pip install -e .[bench]`).
- default: the same for the default configuration (clipping off, the non-finite guard on): ours against bare
  torch's fused step without clipping.

A second table times one weight-EMA update (parameters and floating-point buffers) on the same models: ours
(`WeightEMA.update()`), timm's `ModelEmaV3.update` (when timm is installed) and torch's `AveragedModel` with
`get_ema_multi_avg_fn` and `use_buffers=True`.

Variants are timed in rotation, repeatedly; the table holds medians and ratios, and the memory-bandwidth bound:
the bytes the iteration must move (clipping reads the gradients twice and writes them once; the update reads
parameters, gradients and optimizer state and writes parameters and state) over a copy bandwidth measured in the
same run (STREAM's triad). Also timed: `LearningRateScheduler.step()` with 10 groups, `Optimizer.build()` against the number of
tensors, and the trainer loop against a hand-written loop on a tiny model.
"""
import copy
import datetime
import gc
import logging
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from pet.config import get_cfg
from pet.models import build_classifier
from pet.solver import LearningRateScheduler, Optimizer
from pet.solver.optimizers.builder import group_rules
from pet.solver.param_groups.rules import param_entries
from pet.solver.schedules.from_config import lr_schedule_from_cfg
from pet.solver.units import SolverUnit

FULL_MODELS = ["resnet50", "mobilenet_v3_small", "swin_t", "vit_b_16"]
QUICK_MODELS = ["mobilenet_v3_small"]
OPTIMIZERS = ["SGD", "ADAMW"]
# Bytes moved per parameter element in one iteration (float32): clipping reads the gradients for the norm and
# reads + writes them to scale (12); SGD with momentum reads p, g, buf and writes p, buf (20); AdamW reads p, g,
# m, v and writes p, m, v (28).
BYTES_PER_ELEMENT = {"SGD": 12 + 20, "ADAMW": 12 + 28}
SOLVER_KEYS = ["SOLVER.OPTIMIZER.BASE_LR", 0.1, "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.1,
               "SOLVER.OPTIMIZER.BIAS_LR_FACTOR", 2.0, "SOLVER.OPTIMIZER.WEIGHT_DECAY", 1e-4,
               "SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True, "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 1.0]


def solver_cfg(opt_type: str):
    cfg = get_cfg()
    cfg.merge_from_list(SOLVER_KEYS + ["SOLVER.OPTIMIZER.TYPE", opt_type])
    return cfg


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_with_grads(name: str, device: torch.device) -> nn.Module:
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.NAME", name, "MODEL.NUM_CLASSES", 1000, "DATA.IMAGE_SIZE", 224])
    torch.manual_seed(0)
    model = build_classifier(cfg).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    return model


def copy_with_grads(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    for p, q in zip(clone.parameters(), model.parameters()):
        p.grad = q.grad.clone()
    return clone


# ----------------------------------------------------------------------------------------------- the variants
def solver_step(model: nn.Module, cfg: Any) -> Callable[[], None]:
    """One iteration of our solver built from `cfg`: the step (with its guard and clipping) and the lr update."""
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    scheduler = LearningRateScheduler(optimizer, cfg.SOLVER)

    def step() -> None:
        optimizer.step()
        scheduler.step()
    step.groups = len(optimizer.param_groups)  # type: ignore[attr-defined]
    return step


def ours(model: nn.Module, opt_type: str) -> Callable[[], None]:
    return solver_step(model, solver_cfg(opt_type))


def ours_default(model: nn.Module, opt_type: str) -> Callable[[], None]:
    """Ours with the default keys: no clipping, the non-finite guard on."""
    cfg = solver_cfg(opt_type)
    cfg.merge_from_list(["SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", False])
    return solver_step(model, cfg)


def torch_class(opt_type: str) -> type:
    return {"SGD": torch.optim.SGD, "ADAMW": torch.optim.AdamW}[opt_type]


def torch_kwargs(opt_type: str) -> dict:
    return {"momentum": 0.9} if opt_type == "SGD" else {}


def bare(model: nn.Module, opt_type: str, clip: bool = True) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch_class(opt_type)(params, lr=0.1, weight_decay=1e-4, fused=True, **torch_kwargs(opt_type))
    schedule = lr_schedule_from_cfg(solver_cfg(opt_type).SOLVER)
    group, state = optimizer.param_groups[0], {"k": 0}
    foreach = True if params[0].is_cuda else None  # torch's foreach clipping exists for CUDA only

    def step() -> None:
        if clip:
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=foreach)
        optimizer.step()
        state["k"] += 1
        group["lr"] = 0.1 * schedule(state["k"])
    return step


def bare_default(model: nn.Module, opt_type: str) -> Callable[[], None]:
    """Bare torch without clipping: the reference of the default configuration."""
    return bare(model, opt_type, clip=False)


def pet_style(model: nn.Module, opt_type: str) -> Callable[[], None]:
    cfg = solver_cfg(opt_type)
    entries = param_entries(model, group_rules(cfg.SOLVER.OPTIMIZER))
    groups = [dict(params=[entry.param], **entry.hyperparams) for entry in entries]
    optimizer = torch_class(opt_type)(groups, lr=0.1, **torch_kwargs(opt_type))  # torch's default kernels
    schedule = lr_schedule_from_cfg(cfg.SOLVER)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    params = [p for g in groups for p in g["params"]]

    def step() -> None:  # Pet's clipping: one tensor at a time
        norms = [torch.linalg.vector_norm(p.grad) for p in params]
        scale = torch.clamp(1.0 / (torch.linalg.vector_norm(torch.stack(norms)) + 1e-6), max=1.0)
        for p in params:
            p.grad.mul_(scale)
        optimizer.step()
        scheduler.step()
    return step


def mmengine_available() -> bool:
    try:
        import mmengine  # noqa: F401
    except ImportError:
        return False
    return True


def mmengine_wrapper(model: nn.Module, opt_type: str) -> Callable[[], None]:
    from mmengine.logging import MMLogger
    from mmengine.optim import LinearLR, MultiStepLR, build_optim_wrapper

    MMLogger.get_current_instance().setLevel(logging.WARNING)  # its per-parameter INFO lines
    optimizer = dict(type="SGD" if opt_type == "SGD" else "AdamW", lr=0.1, weight_decay=1e-4,
                     **torch_kwargs(opt_type))
    wrapper = build_optim_wrapper(model, dict(
        type="OptimWrapper", optimizer=optimizer, clip_grad=dict(max_norm=1.0, norm_type=2),
        paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, bias_lr_mult=2.0,
                           custom_keys={"backbone": dict(lr_mult=0.1)})))
    schedulers = [LinearLR(wrapper, start_factor=0.1, by_epoch=False, begin=0, end=500),
                  MultiStepLR(wrapper, milestones=[30000], gamma=0.1, by_epoch=False)]

    def step() -> None:
        wrapper.step()
        for scheduler in schedulers:
            scheduler.step()
    return step


# ----------------------------------------------------------------------------------------------- measurement
def calibrated_inner(step: Callable[[], None], device: torch.device, minimum: int, sample_seconds: float = 0.025
                     ) -> int:
    """Calls per timed sample so that a sample lasts about `sample_seconds` (short samples are mostly noise)."""
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return max(minimum, min(20, int(sample_seconds / max(time.perf_counter() - start, 1e-6)) + 1))


def interleaved(steps: Dict[str, Callable[[], None]], device: torch.device, repeats: int, inner: int
                ) -> Dict[str, float]:
    """Median seconds per call of each step, timed in rotation so that machine noise hits all alike."""
    names = list(steps)
    for name in names:
        for _ in range(2):
            steps[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            synchronize(device)
            start = time.perf_counter()
            for _ in range(inner):
                steps[name]()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(values) for name, values in times.items()}


def stream_bandwidth(device: torch.device, megabytes: int = 256) -> float:
    """Bytes per second of STREAM's triad c = a + 2b on large tensors (two reads and one write per element)."""
    a = torch.ones(megabytes * 2 ** 20 // 4, device=device)
    b, c = torch.ones_like(a), torch.empty_like(a)
    seconds = interleaved({"triad": lambda: torch.add(a, b, alpha=2.0, out=c)}, device, repeats=7, inner=2)["triad"]
    return 3 * a.numel() * 4 / seconds


def bench_models(models: List[str], device: torch.device, repeats: int, inner: int, bandwidth: float,
                 calibrate: bool = True) -> List[dict]:
    rows = []
    for name in models:
        model = model_with_grads(name, device)
        tensors = sum(1 for p in model.parameters() if p.requires_grad)
        elements = sum(p.numel() for p in model.parameters() if p.requires_grad)
        for opt_type in OPTIMIZERS:
            variants = {"ours": ours, "bare": bare, "pet": pet_style, "ours_default": ours_default,
                        "bare_default": bare_default}
            if mmengine_available():
                variants["mmengine"] = mmengine_wrapper
            steps = {label: make(copy_with_grads(model), opt_type) for label, make in variants.items()}
            calls = calibrated_inner(steps["ours"], device, inner) if calibrate else inner
            median = interleaved(steps, device, repeats, calls)
            bound = BYTES_PER_ELEMENT[opt_type] * elements / bandwidth
            rows.append(dict(model=name, optimizer=opt_type, tensors=tensors, elements=elements,
                             groups=steps["ours"].groups, bound=bound, **median))  # type: ignore[attr-defined]
            print(f"  {name} {opt_type}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in median.items()),
                  flush=True)
            del steps
        del model
    return rows


def timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def ema_updates(model: nn.Module) -> Dict[str, Callable[[], None]]:
    """One EMA update of `model`'s parameters and float buffers, by each implementation (decay 0.9998)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from pet.solver.optimizers.ema import WeightEMA

    ours_ema = WeightEMA(model, decay=0.9998, warmup_iters=0)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9998), use_buffers=True)
    updates = {"ours": ours_ema.update, "torch": lambda: averaged.update_parameters(model)}
    if timm_available():
        from timm.utils import ModelEmaV3

        timm_ema = ModelEmaV3(model, decay=0.9998)
        updates["timm"] = lambda: timm_ema.update(model)
    return updates


def bench_ema(models: List[str], device: torch.device, repeats: int, inner: int) -> List[dict]:
    """Median seconds of one EMA update per implementation, per model."""
    rows = []
    for name in models:
        model = model_with_grads(name, device)
        median = interleaved(ema_updates(model), device, repeats, inner)
        rows.append(dict(model=name, tensors=sum(1 for _ in model.state_dict()), **median))
        print(f"  EMA {name}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in median.items()), flush=True)
        del model
    return rows


def bench_scheduler(repeats: int) -> float:
    """Median seconds of `LearningRateScheduler.step()` with 10 param groups."""
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.01 * (i + 1)} for i in range(10)]
    scheduler = LearningRateScheduler(torch.optim.SGD(groups, lr=0.1), get_cfg().SOLVER)
    return interleaved({"step": scheduler.step}, torch.device("cpu"), repeats=repeats, inner=1000)["step"]


def bench_build(sizes: List[int], repeats: int) -> Dict[int, float]:
    """Median seconds of `Optimizer.build()` for models of `sizes` parameter tensors (weights and biases)."""
    cfg = get_cfg().SOLVER.OPTIMIZER
    Optimizer(nn.Linear(2, 2), cfg).build()  # the first optimizer in a process imports torch._dynamo: not ours
    results = {}
    for size in sizes:
        model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(size // 2)])
        results[size] = interleaved({"build": lambda: Optimizer(model, cfg).build()}, torch.device("cpu"),
                                    repeats=repeats, inner=1)["build"]
    return results


def bench_trainer(iterations: int, repeats: int) -> Dict[str, float]:
    """Seconds per iteration of the Trainer and of a hand-written loop, same tiny model, data and solver."""
    from pet.engine.loop.hooks import IterationTimer, LRSchedulerHook
    from pet.engine import Trainer, classification_losses

    torch.manual_seed(0)
    batches = [(torch.randn(64, 128), torch.randint(0, 10, (64,))) for _ in range(8)]

    def endless():
        while True:
            yield from batches

    def setup():
        model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        cfg = solver_cfg("SGD")
        built = Optimizer(model, cfg.SOLVER.OPTIMIZER).build_guarded()
        return model, built, LearningRateScheduler(built.optimizer, cfg.SOLVER)

    model, built, scheduler = setup()
    trainer = Trainer(model, classification_losses, endless(), [SolverUnit.of(built, scheduler=scheduler)],
                      torch.device("cpu"))
    trainer.register_hooks([IterationTimer(), LRSchedulerHook(trainer.units)])
    done = {"iter": 0}

    def trainer_block() -> None:
        trainer.train(done["iter"], done["iter"] + iterations)
        done["iter"] += iterations

    hand_model, hand_built, hand_scheduler = setup()
    hand_optimizer = hand_built.optimizer
    hand_data = endless()

    def hand_block() -> None:
        for _ in range(iterations):
            images, labels = next(hand_data)
            loss = F.cross_entropy(hand_model(images), labels)
            loss.backward()
            hand_optimizer.step()
            hand_optimizer.zero_grad(set_to_none=True)
            hand_scheduler.step()
            loss.item()  # a loop that logs its loss reads it, as the trainer does

    logging.getLogger("pet").setLevel(logging.WARNING)
    median = interleaved({"trainer": trainer_block, "hand": hand_block}, torch.device("cpu"), repeats, inner=1)
    return {name: seconds / iterations for name, seconds in median.items()}


# ----------------------------------------------------------------------------------------------- report
def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


def default_table(rows: List[dict]) -> List[str]:
    """The default configuration's rows: ours (guard on, no clipping) against bare fused torch without clipping."""
    lines = ["", "Default configuration (clipping off, the non-finite guard on):", "",
             "| model | optimizer | ours ms | bare ms | ours / bare |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['optimizer']} | {r['ours_default'] * 1e3:.2f} | "
                     f"{r['bare_default'] * 1e3:.2f} | {r['ours_default'] / r['bare_default']:.2f} |")
    return lines


def ema_table(rows: List[dict]) -> List[str]:
    """One weight-EMA update per implementation."""
    has_timm = all("timm" in row for row in rows)
    lines = ["", "One weight-EMA update (parameters and floating-point buffers, decay 0.9998):", "",
             "| model | state tensors | ours ms |" + (" timm ModelEmaV3 ms |" if has_timm else "")
             + " torch AveragedModel ms |" + (" timm / ours |" if has_timm else "") + " torch / ours |",
             "|---|---|---|---|---|" + ("---|---|" if has_timm else "")]
    for r in rows:
        timm = f" {r['timm'] * 1e3:.2f} |" if has_timm else ""
        timm_ratio = f" {r['timm'] / r['ours']:.2f} |" if has_timm else ""
        lines.append(f"| {r['model']} | {r['tensors']} | {r['ours'] * 1e3:.2f} |{timm} {r['torch'] * 1e3:.2f} |"
                     f"{timm_ratio} {r['torch'] / r['ours']:.2f} |")
    if not has_timm:
        lines.append("timm is not installed (`pip install -e .[bench]`): its column is left out.")
    return lines


def markdown(device: torch.device, command: str, bandwidth: float, rows: List[dict], ema: List[dict],
             scheduler: float, build: Dict[int, float], trainer: Dict[str, float]) -> str:
    has_mm = any("mmengine" in row for row in rows)
    lines = [f"### {device.type.upper()}: {machine(device)}", "",
             f"`{command}` on {datetime.date.today().isoformat()}; STREAM triad bandwidth {bandwidth / 1e9:.1f} GB/s.",
             "",
             "| model | optimizer | tensors | our groups | ours ms | bare ms | pet ms |"
             + (" mmengine ms |" if has_mm else "") + " ours / bare | pet / ours |"
             + (" mmengine / ours |" if has_mm else "") + " bound ms | ours / bound |",
             "|---|---|---|---|---|---|---|" + ("---|" if has_mm else "") + "---|---|" + ("---|" if has_mm else "")
             + "---|---|"]
    for r in rows:
        mm = f" {r['mmengine'] * 1e3:.2f} |" if has_mm else ""
        mm_ratio = f" {r['mmengine'] / r['ours']:.2f} |" if has_mm else ""
        lines.append(f"| {r['model']} | {r['optimizer']} | {r['tensors']} | {r['groups']} | {r['ours'] * 1e3:.2f} | "
                     f"{r['bare'] * 1e3:.2f} | {r['pet'] * 1e3:.2f} |{mm} {r['ours'] / r['bare']:.2f} | "
                     f"{r['pet'] / r['ours']:.2f} |{mm_ratio} {r['bound'] * 1e3:.2f} | {r['ours'] / r['bound']:.2f} |")
    lines += default_table(rows) + ema_table(ema)
    sizes = sorted(build)
    lines += ["", f"- `LearningRateScheduler.step()` with 10 groups: {scheduler * 1e6:.1f} us (median).",
              "- `Optimizer.build()`: " + ", ".join(f"{n:,} tensors {build[n]:.3f} s" for n in sizes)
              + f" ({build[sizes[-1]] / build[sizes[0]]:.2f}x time for {sizes[-1] / sizes[0]:.0f}x tensors).",
              f"- Trainer loop {trainer['trainer'] * 1e6:.0f} us / iteration against a hand-written loop "
              f"{trainer['hand'] * 1e6:.0f} us: {trainer['trainer'] / trainer['hand']:.3f}x.", ""]
    if not has_mm:
        lines.insert(3, "MMEngine is not installed (`pip install -e .[bench]`): its column is left out.")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> str:
    from pet.engine.runs.cli import ArgumentParser, write_report

    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small model, few repeats (for tests)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", nargs="+", metavar="NAME", help="torchvision models (default: all four)")
    parser.add_argument("--repeats", type=int, help="timed rounds per variant")
    parser.add_argument("--out", default=os.path.join("output", "benchmarks.md"), metavar="FILE",
                        help="markdown file for the results")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 11)
    models = args.models or (QUICK_MODELS if args.quick else FULL_MODELS)
    command = "python tools/bench_solver.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"Benchmarking on {machine(device)}", flush=True)
    # The small measurements first, on a clean heap: the model benchmarks leave gigabytes behind for the GC.
    gc.collect()
    scheduler = bench_scheduler(repeats)
    build = bench_build([500, 1000] if args.quick else [2500, 5000, 10000], repeats=3)
    trainer = bench_trainer(20 if args.quick else 25, repeats if args.quick else 41)
    bandwidth = stream_bandwidth(device, 64 if args.quick else 256)
    rows = bench_models(models, device, repeats, inner=1 if args.quick else 2, bandwidth=bandwidth,
                        calibrate=not args.quick)
    ema = bench_ema(models, device, repeats, inner=1 if args.quick else 3)
    report = markdown(device, command.strip(), bandwidth, rows, ema, scheduler, build, trainer)
    return write_report(args.out, report)


if __name__ == "__main__":
    from pet.engine.runs.cli import run

    sys.exit(run(main))
