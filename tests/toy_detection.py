"""A tiny shapes detection run for the tests: 64-pixel images, 16 + 8 of them, FCOS on a ResNet-18 FPN."""
import os

from pet.config import get_cfg
from pet.data.shapes import ensure_shapes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES_CFG = os.path.join(ROOT, "cfgs", "shapes", "fcos_resnet18_sgd_cosine.yaml")
TINY = {"SEED": 0, "IMAGE_SIZE": 64, "NUM_TRAIN": 16, "NUM_VAL": 8, "MAX_SHAPES": 3}


def make_tiny_shapes(root: str) -> str:
    """Generate the tiny set under `root` (DATA.ROOT); return its folder."""
    return ensure_shapes(root, TINY["SEED"], TINY["IMAGE_SIZE"], {"train": TINY["NUM_TRAIN"], "val": TINY["NUM_VAL"]},
                         TINY["MAX_SHAPES"])


def tiny_overrides(data_root: str, output_dir: str) -> list:
    """Config overrides of the shapes config for a run of 6 updates of 2 images, a checkpoint every 2."""
    return ["OUTPUT_DIR", str(output_dir), "SEED", str(TINY["SEED"]), "DATA.ROOT", str(data_root),
            "DATA.IMAGE_SIZE", str(TINY["IMAGE_SIZE"]), "DATA.SHAPES.NUM_TRAIN", str(TINY["NUM_TRAIN"]),
            "DATA.SHAPES.NUM_VAL", str(TINY["NUM_VAL"]), "MODEL.DETECTION.MIN_SIZE", "64",
            "MODEL.DETECTION.MAX_SIZE", "64", "TRAIN.BATCH_SIZE", "2", "TEST.BATCH_SIZE", "4",
            "SOLVER.SCHEDULER.TOTAL_ITERS", "6", "SOLVER.SCHEDULER.WARM_UP_ITERS", "2", "TRAIN.CHECKPOINT_PERIOD", "2",
            "TRAIN.WRITER_PERIOD", "1"]


def tiny_cfg(data_root: str, output_dir: str = "unused"):
    """The shapes config with `tiny_overrides`."""
    cfg = get_cfg()
    cfg.merge_from_file(SHAPES_CFG)
    cfg.merge_from_list(tiny_overrides(data_root, output_dir))
    return cfg
