"""Every shipped config in cfgs/ is valid and builds a complete run (data replaced by FakeData where external)."""
import glob
import os

import pytest

from pet.engine.cli import load_config
from pet.engine.runner import build_run
from tests.tools.conftest import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "cfgs", "**", "*.yaml"), recursive=True))


def test_there_are_digits_imagenet_and_cifar_configs():
    folders = {os.path.basename(os.path.dirname(path)) for path in CONFIGS}
    assert {"digits", "imagenet", "cifar10"} <= folders
    assert len([p for p in CONFIGS if "/digits/" in p]) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_builds(path, tmp_path):
    overrides = ["OUTPUT_DIR", str(tmp_path)]
    if "/digits/" not in path:  # users' data: stand in FakeData of the same image size
        overrides += ["DATA.DATASET", "fake", "DATA.FAKE_SIZE", "256", "DATA.NUM_WORKERS", "0"]
    cfg = load_config(path, overrides)
    run = build_run(cfg)
    assert run.start_iter == 0 and run.max_iter > 0
    for unit in run.units:
        assert len(unit.optimizer.param_groups) >= 2
        assert all(g["lr"] > 0 for g in unit.optimizer.param_groups)
    assert (tmp_path / "config.yaml").exists()
