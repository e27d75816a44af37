"""Routed optimizers (Muon on the hidden weights, AdamW on the rest): one solver iteration against the same
optimizers stepped by hand, and accuracy on the digits against the default SGD config after as many updates.

    python tools/bench_routes.py [--quick] [--models resnet18 vit_b_16] [--seeds 3] [--out FILE]

Iteration (random gradients, no forward pass; variants timed in rotation, medians):
- ours: the units the shipped preset's SOLVER.OPTIMIZERS builds (`cfgs/digits/resnet18_muon.yaml` for ResNets,
  `cfgs/fake/vit_b_16_muon.yaml` for ViTs), stepped as the trainer steps them (`UpdateStep.apply`: one non-finite
  verdict over both optimizers), then their lr schedulers;
- hand: `torch.optim.Muon` (timm's `Muon` where convolution kernels are routed to it) and fused `torch.optim.AdamW`
  over the same parameter sets and groups, the lr written into the groups; no guard.
Accuracy: `tools/train_net.py --cfg cfgs/digits/resnet18_muon.yaml` against the default
`cfgs/digits/resnet18_sgd_step.yaml`, both for the same number of updates, for each seed: the final validation
accuracy from metrics.json.
"""
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from pet.config import get_cfg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also when loaded from a file, as the tests do
from bench_solver import interleaved, machine, model_with_grads  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
PRESETS = {"resnet": os.path.join(ROOT, "cfgs", "digits", "resnet18_muon.yaml"),
           "vit": os.path.join(ROOT, "cfgs", "fake", "vit_b_16_muon.yaml")}
DEFAULT_CFG = os.path.join(ROOT, "cfgs", "digits", "resnet18_sgd_step.yaml")


def preset_for(model_name: str) -> Any:
    """The shipped routing preset of the model's family, as a config."""
    cfg = get_cfg()
    cfg.merge_from_file(PRESETS["vit" if model_name.startswith("vit") else "resnet"])
    return cfg


# ----------------------------------------------------------------------------------------------- the variants
def ours(model: nn.Module, cfg: Any) -> Callable[[], None]:
    """The preset's units, stepped through the trainer's update (guards armed together), then the schedulers."""
    from pet.engine.loop.update_step import UpdateStep
    from pet.solver.units import build_solver_units

    units = build_solver_units(model, cfg.SOLVER)
    update = UpdateStep(model, None, units, next(model.parameters()).device)
    finite = torch.zeros((), device=next(model.parameters()).device)

    def step() -> None:
        update.apply(units, finite)
        for unit in units:
            unit.scheduler.step()
    step.units = units  # type: ignore[attr-defined]
    return step


def by_hand(twin: nn.Module, cfg: Any, units: List[Any], names: Dict[int, str]) -> Callable[[], None]:
    """Muon and fused AdamW built with torch's (and timm's) constructors over `twin`'s parameters of the same
    names and groups as `units` (`names`: id of each unit parameter -> its name), the lr set in the groups."""
    from pet.config.named_optimizers import optimizer_entries
    from pet.solver.schedules.from_config import lr_schedule_from_cfg

    params = dict(twin.named_parameters())
    muon_cfg = optimizer_entries(cfg.SOLVER)[units[0].name].OPTIMIZER  # the top-level keys under the entry's
    optimizers = []
    for unit in units:
        groups = [{"params": [params[names[id(p)]] for p in group["params"]], "lr": group["lr"],
                   "weight_decay": group["weight_decay"]} for group in unit.optimizer.param_groups]
        if isinstance(unit.optimizer, torch.optim.AdamW):
            optimizers.append(torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, fused=True))
            continue
        extra = {} if type(unit.optimizer) is torch.optim.Muon else {"ns_coefficients": "original",
                                                                      "conv_mode": "flatten"}
        optimizers.append(type(unit.optimizer)(groups, momentum=muon_cfg.MOMENTUM, nesterov=muon_cfg.NESTEROV,
                                               ns_steps=muon_cfg.MUON.NS_STEPS,
                                               adjust_lr_fn=muon_cfg.MUON.ADJUST_LR, **extra))
    schedule = lr_schedule_from_cfg(cfg.SOLVER)
    base = [[group["lr"] for group in optimizer.param_groups] for optimizer in optimizers]
    state = {"k": 0}

    def step() -> None:
        for optimizer in optimizers:
            optimizer.step()
        state["k"] += 1
        factor = schedule(state["k"])
        for optimizer, lrs in zip(optimizers, base):
            for group, lr in zip(optimizer.param_groups, lrs):
                group["lr"] = lr * factor
    return step


def bench_iteration(models: List[str], device: torch.device, repeats: int) -> List[dict]:
    """Median seconds per iteration of ours and by hand, and the routes, per model."""
    rows = []
    for name in models:
        cfg = preset_for(name)
        model, twin = model_with_grads(name, device), model_with_grads(name, device)  # the same seed
        mine = ours(model, cfg)
        names = {id(p): n for n, p in model.named_parameters()}
        steps = {"ours": mine, "hand": by_hand(twin, cfg, mine.units, names)}  # type: ignore[attr-defined]
        median = interleaved(steps, device, repeats, inner=1)
        routes = [(unit.name, type(unit.optimizer).__module__.split(".")[0] + "." + type(unit.optimizer).__name__,
                   len(unit.params()), sum(p.numel() for p in unit.params())) for unit in mine.units]
        rows.append(dict(model=name, routes=routes, **median))
        print(f"  {name}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in median.items()), flush=True)
        del steps, model, twin
    return rows


# ----------------------------------------------------------------------------------------------- accuracy
def final_accuracy(cfg_file: str, updates: int, seed: int, folder: str) -> float:
    """The last validation accuracy of `tools/train_net.py` on `cfg_file` for `updates` updates."""
    output = os.path.join(folder, f"{os.path.basename(cfg_file)}-{seed}")
    command = [sys.executable, TRAIN_NET, "--cfg", cfg_file, "OUTPUT_DIR", output, "SEED", str(seed),
               "SOLVER.SCHEDULER.TOTAL_ITERS", str(updates), "TRAIN.EVAL_PERIOD", str(updates),
               "TRAIN.CHECKPOINT_PERIOD", str(updates)]
    if cfg_file == DEFAULT_CFG:  # its STEP milestones, at the same fractions of the shorter run
        command += ["SOLVER.SCHEDULER.STEPS", f"({updates * 2 // 3}, {updates * 13 // 15})"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    rows = [json.loads(line) for line in open(os.path.join(output, "metrics.json"))]
    return [row["val/accuracy"] for row in rows if "val/accuracy" in row][-1]


def bench_accuracy(updates: int, seeds: int) -> Dict[str, List[float]]:
    """config name -> the final validation accuracy of each seed, the configs run in rotation."""
    results: Dict[str, List[float]] = {"muon": [], "sgd": []}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(seeds):
            for label, cfg_file in (("muon", PRESETS["resnet"]), ("sgd", DEFAULT_CFG)):
                results[label].append(final_accuracy(cfg_file, updates, seed, folder))
                print(f"  digits {label} seed {seed}: {results[label][-1]:.2f}%", flush=True)
    return results


# ----------------------------------------------------------------------------------------------- report
def markdown(device: torch.device, command: str, rows: List[dict], accuracy: Dict[str, List[float]],
             updates: int) -> str:
    lines = [f"### Routed optimizers, {device.type.upper()}: {machine(device)}", "",
             f"`{command}` on {datetime.date.today().isoformat()}.", "",
             "| model | routes (entry: optimizer, tensors, parameters) | ours ms | by hand ms | ours / by hand |",
             "|---|---|---|---|---|"]
    for r in rows:
        routes = "; ".join(f"{name}: {kind}, {tensors}, {numel:,}" for name, kind, tensors, numel in r["routes"])
        lines.append(f"| {r['model']} | {routes} | {r['ours'] * 1e3:.1f} | {r['hand'] * 1e3:.1f} | "
                     f"{r['ours'] / r['hand']:.3f} |")
    if accuracy["muon"]:
        lines += ["", f"Digits, ResNet-18, {updates} updates, final validation accuracy (%) per seed:", "",
                  "| config | " + " | ".join(f"seed {i}" for i in range(len(accuracy["muon"]))) + " | median |",
                  "|---|" + "---|" * (len(accuracy["muon"]) + 1)]
        for label, cfg_file in (("muon", PRESETS["resnet"]), ("sgd", DEFAULT_CFG)):
            values = accuracy[label]
            lines.append(f"| `{os.path.relpath(cfg_file, ROOT)}` | " + " | ".join(f"{v:.2f}" for v in values)
                         + f" | {statistics.median(values):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> str:
    from pet.engine.runs.cli import ArgumentParser, write_report

    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-18 only, few repeats, 20 updates (for tests)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", nargs="+", metavar="NAME", help="torchvision models (default: resnet18 vit_b_16)")
    parser.add_argument("--repeats", type=int, help="timed rounds per variant")
    parser.add_argument("--seeds", type=int, help="digits runs per config (0: no accuracy table)")
    parser.add_argument("--updates", type=int, default=600, help="updates of each digits run")
    parser.add_argument("--out", default=os.path.join("output", "bench_routes.md"), metavar="FILE",
                        help="markdown file for the results")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    models = args.models or (["resnet18"] if args.quick else ["resnet18", "vit_b_16"])
    repeats = args.repeats or (2 if args.quick else 7)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    updates = 20 if args.quick else args.updates
    command = "python tools/bench_routes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"Benchmarking on {machine(device)}", flush=True)
    rows = bench_iteration(models, device, repeats)
    accuracy = bench_accuracy(updates, seeds)
    return write_report(args.out, markdown(device, command.strip(), rows, accuracy, updates))


if __name__ == "__main__":
    from pet.engine.runs.cli import run

    sys.exit(run(main))
