"""tools/plot_schedule.py: a PNG for every shipped config, whose curves are the scheduler's own values."""
import glob
import os

import pytest
from PIL import Image

from pet.config import get_cfg
from pet.models import build_model
from pet.solver.schedule_config import lr_schedule_from_cfg
from pet.solver.run_optimizers import build_solver_units
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

    # The curves are the closed-form schedule of every group: initial lr x FT_FACTOR x f(k), for every k.
    cfg = get_cfg()
    cfg.merge_from_file(path)
    ipe = int(extra[1]) if extra else plot_schedule.iterations_per_epoch(cfg, None, 1)
    units = build_solver_units(build_model(cfg), cfg.SOLVER, iter_per_epoch=ipe)
    max_iter = lr_schedule_from_cfg(cfg.SOLVER, ipe).total_iters
    for unit in units:
        schedule, ft = unit.scheduler.schedule, unit.scheduler.ft_factor
        for index, group in enumerate(unit.optimizer.param_groups):
            values = curves["lr"][f"{unit.name}/{group['name']}" if unit.name else group["name"]]
            assert len(values) == max_iter
            for k in range(0, max_iter, max(1, max_iter // 97)):
                assert values[k] == pytest.approx(group["initial_lr"] * ft * schedule(k), rel=1e-12)


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
