"""tools/plot_schedule.py: a PNG for every shipped config, whose curves are the scheduler's own values."""
import glob
import math
import os

import pytest
import torch
from PIL import Image

from pet.config import get_cfg, optimizer_entries
from pet.models import build_model
from pet.solver.units import build_solver_units
from tests.tools.conftest import ROOT
from tests.tools.test_cli_errors import load_tool

plot_schedule = load_tool("plot_schedule")
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "cfgs", "**", "*.yaml"), recursive=True))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_config_gets_a_png_of_its_schedule(path, tmp_path, capsys):
    out = tmp_path / "schedule.png"
    extra = [] if "/digits/" in path else ["--iter-per-epoch", "50"]
    curves = plot_schedule.main(["--cfg", path, "--out", str(out), *extra])

    assert out.stat().st_size > 10_000
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (1000, 350 * len(curves))  # 10 x 3.5 inches per panel at 100 dpi
    printed = capsys.readouterr().out
    assert "group" in printed and "weight_decay" in printed and f"Wrote {out}" in printed

    # The curves are initial lr x FT_FACTOR x f(k) for every group and every k, f written out below from the
    # README's formulas (torch's OneCycleLR for ONE_CYCLE), not taken from the solver.
    cfg = get_cfg()
    cfg.merge_from_file(path)
    ipe = int(extra[1]) if extra else plot_schedule.iterations_per_epoch(cfg, None, 1)
    entries = optimizer_entries(cfg.SOLVER)
    units = build_solver_units(build_model(cfg), cfg.SOLVER, iter_per_epoch=ipe)
    max_iter = in_updates(cfg.SOLVER.SCHEDULER, "TOTAL", ipe)
    for unit in units:
        sched, ft = entries[unit.name].SCHEDULER, cfg.SOLVER.LR_SCALING.FT_FACTOR
        factors = expected_factors(sched, ipe)
        for group in unit.optimizer.param_groups:
            values = curves["lr"][f"{unit.name}/{group['name']}" if unit.name else group["name"]]
            assert len(values) == max_iter
            for k in sample_iterations(sched, ipe, max_iter):
                assert values[k] == pytest.approx(group["initial_lr"] * ft * factors[k], rel=1e-9), (group["name"], k)


def sample_iterations(sched, ipe, max_iter):
    """About a hundred iterations across the run, and each milestone and warmup end with its neighbours."""
    steps = [int(round(s * ipe)) for s in sched.STEPS] if sched.TOTAL_EPOCHS is not None else list(sched.STEPS)
    edges = [*steps, in_updates(sched, "WARM_UP", ipe), max_iter - 1]
    picked = set(range(0, max_iter, max(1, max_iter // 97))) | {k + d for k in edges for d in (-1, 0, 1)}
    return sorted(k for k in picked if 0 <= k < max_iter)


def in_updates(sched, what, ipe):
    """TOTAL or WARM_UP length in updates: epochs x iterations per epoch, rounded, where epochs are given."""
    epochs = sched[f"{what}_EPOCHS"]
    return int(round(epochs * ipe)) if epochs is not None else sched[f"{what}_ITERS"]


def expected_factors(sched, ipe):
    """f(k) of a SCHEDULER node for every k of the run: warmup(k) x policy(k)."""
    total, warmup = in_updates(sched, "TOTAL", ipe), in_updates(sched, "WARM_UP", ipe)
    steps = [int(round(s * ipe)) for s in sched.STEPS] if sched.TOTAL_EPOCHS is not None else list(sched.STEPS)
    floor, gamma, policy = sched.MIN_LR_FACTOR, sched.GAMMA, sched.POLICY.upper()
    if policy == "ONE_CYCLE":
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        one_cycle = sched.ONE_CYCLE
        torch_schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=1.0, total_steps=total, pct_start=one_cycle.PCT_START, div_factor=one_cycle.DIV_FACTOR,
            final_div_factor=one_cycle.FINAL_DIV_FACTOR, anneal_strategy="cos", cycle_momentum=False)
        factors = []
        for k in range(total):
            factors.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if k < total - 1:
                torch_schedule.step()
        return factors

    def cosine(progress):
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def after_warmup(k):
        if policy == "CONSTANT":
            return 1.0
        if policy == "STEP" or (policy == "STEP_COSINE" and k < steps[-1]):
            return gamma ** sum(1 for s in steps if s <= k)
        if policy == "COSINE":
            return cosine(min(k, total) / total)
        if policy == "POLY":
            return floor + (1 - floor) * (1 - min(k, total) / total) ** sched.LR_POW
        assert policy == "STEP_COSINE", policy
        return gamma ** (len(steps) - 1) * cosine(min(k - steps[-1], total - steps[-1]) / (total - steps[-1]))

    def warmup_factor(k):
        if k >= warmup:
            return 1.0
        a, start = k / warmup, sched.WARM_UP_FACTOR
        return {"CONSTANT": start, "LINEAR": start * (1 - a) + a, "EXP": start ** (1 - a)}[sched.WARM_UP_METHOD.upper()]

    return [warmup_factor(k) * after_warmup(k) for k in range(total)]


def test_momentum_and_weight_decay_panels_when_scheduled(tmp_path):
    path = os.path.join(ROOT, "cfgs", "digits", "resnet18_sgd_one_cycle.yaml")
    curves = plot_schedule.main(["--cfg", path, "--out", str(tmp_path / "s.png")])
    assert list(curves) == ["lr", "momentum", "weight_decay"]
    momentum = curves["momentum"]["weight"]
    assert momentum[0] == pytest.approx(0.95 - 0.1 / 25) and min(momentum) == pytest.approx(0.85)
    assert curves["weight_decay"]["weight"][0] == 0.0005 and curves["weight_decay"]["norm+bias"][-1] == 0.0


@pytest.mark.parametrize("argv, message", [
    (["--world-size", "0"], r"--world-size = 0 must be at least 1"),
    (["--iter-per-epoch", "-3"], r"--iter-per-epoch = -3 must be at least 1"),
    (["--out", "schedule.graph"], r"--out 'schedule.graph' has no image extension; use one of .*\.png"),
])
def test_bad_options_are_one_error_line(tmp_path, capsys, argv, message):
    import re

    code = plot_schedule.run(plot_schedule.main, ["--cfg", CONFIGS[0], "OUTPUT_DIR", str(tmp_path), *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and re.search(message, lines[0]), lines
    assert os.listdir(tmp_path) == []
