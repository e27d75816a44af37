"""Every shipped config in cfgs/ is valid and builds a complete run (data replaced by FakeData where external)."""
import glob
import os

import pytest
import torch

from pet.engine.runs.cli import load_config
from pet.engine.runs.runner import build_run
from pet.models import build_model
from tests.tools.conftest import ROOT
from tests.toy_detection import TINY, make_tiny_shapes

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "cfgs", "**", "*.yaml"), recursive=True))


def test_there_are_digits_imagenet_cifar_shapes_and_coco_configs():
    folders = {os.path.basename(os.path.dirname(path)) for path in CONFIGS}
    assert {"digits", "imagenet", "cifar10", "shapes", "coco"} <= folders
    assert len([p for p in CONFIGS if "/digits/" in p]) >= 5


def stand_in_data(path, shapes_root):
    """Overrides that replace a config's data by a small local set of the same task."""
    folder = os.path.basename(os.path.dirname(path))
    tiny_shapes = ["DATA.IMAGE_SIZE", TINY["IMAGE_SIZE"], "DATA.SHAPES.NUM_TRAIN", TINY["NUM_TRAIN"],
                   "DATA.SHAPES.NUM_VAL", TINY["NUM_VAL"], "TRAIN.BATCH_SIZE", 2]
    if folder == "digits":
        return []
    if folder == "shapes":
        return ["DATA.ROOT", shapes_root, *tiny_shapes]
    if folder == "coco":  # the shapes set is COCO data: read it through the config's coco data set
        shapes = make_tiny_shapes(shapes_root)
        return ["DATA.ROOT", shapes, "DATA.COCO.TRAIN_IMAGES", "train", "DATA.COCO.TRAIN_JSON",
                "annotations/train.json", "DATA.COCO.VAL_IMAGES", "val", "DATA.COCO.VAL_JSON", "annotations/val.json",
                "MODEL.NUM_CLASSES", 4, "DATA.NUM_WORKERS", 0]
    # users' image folders: stand in FakeData of the same image size
    return ["DATA.DATASET", "fake", "DATA.FAKE_SIZE", "256", "DATA.NUM_WORKERS", "0"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_builds(path, tmp_path, shapes_root):
    overrides = ["OUTPUT_DIR", str(tmp_path), *stand_in_data(path, shapes_root)]
    cfg = load_config(path, overrides)
    if cfg.MODEL.WEIGHTS:  # a fine-tuning config: weights of another run stand in for the ones it names
        weights = tmp_path / "weights" / "model.pth"
        weights.parent.mkdir()
        torch.save(build_model(cfg).state_dict(), weights)
        cfg.merge_from_list(["MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(tmp_path / "run")])
        tmp_path = tmp_path / "run"
    run = build_run(cfg)
    assert run.start_iter == 0 and run.max_iter > 0
    # Pet's rules split norms and biases from the weights (a routed entry of matrices only may be one group)
    assert sum(len(unit.optimizer.param_groups) for unit in run.units) >= 2
    for unit in run.units:
        assert all(g["lr"] > 0 for g in unit.optimizer.param_groups)
    assert (tmp_path / "config.yaml").exists()
