"""The root config: every default of the project, cloned by `get_cfg()`."""
from pet.config.node import CfgNode
from pet.config.solver import solver_defaults

_C = CfgNode()
# Where a run writes checkpoints, metrics.json, TensorBoard files and its config.
_C.OUTPUT_DIR = "output"
# Seed of every random number generator (model init, data order); the same seed gives the same run on CPU.
_C.SEED = 0

_C.MODEL = CfgNode()
# A torchvision classification model, built without pretrained weights and split into `backbone` + `head`.
_C.MODEL.NAME = "resnet18"
_C.MODEL.NUM_CLASSES = 10
# Norm layers: BN keeps torchvision's BatchNorm2d; GN (GroupNorm, up to 32 groups) or FROZEN_BN
# (FrozenBatchNorm2d) replace every BatchNorm2d.
_C.MODEL.NORM = "BN"
# Stride-1 stem without max pool, for images of 8 to 64 pixels (digits, CIFAR).
_C.MODEL.SMALL_INPUT = False

_C.DATA = CfgNode()
_C.DATA.DATASET = "digits"  # digits (scikit-learn's bundled 8x8 digits), image_folder, fake
# image_folder: a folder holding train/ and val/ folders of one sub-folder per class.
_C.DATA.ROOT = ""
# Side of the square images the model sees (image_folder and fake; digits are 8x8 and kept so).
_C.DATA.IMAGE_SIZE = 8
# digits: the fraction held out for validation, split per class with SEED.
_C.DATA.VAL_FRACTION = 0.2
# fake: the number of images in the train and val sets.
_C.DATA.FAKE_SIZE = 256
_C.DATA.NUM_WORKERS = 0
# image_folder: open every image's header before training, so that an unreadable file stops the run at once
# (a few minutes for ImageNet-sized sets; turn off there).
_C.DATA.CHECK_IMAGES = True

_C.TRAIN = CfgNode()
# Images per micro-batch on each process; one update sees BATCH_SIZE x world size x SOLVER.ACCUMULATION.STEPS.
_C.TRAIN.BATCH_SIZE = 32
_C.TRAIN.CHECKPOINT_PERIOD = 1000  # iterations between checkpoints
_C.TRAIN.CHECKPOINTS_TO_KEEP = 3  # periodic checkpoints kept on disk (the final one is always kept)
_C.TRAIN.WRITER_PERIOD = 20  # iterations between console / metrics.json / TensorBoard writes
_C.TRAIN.EVAL_PERIOD = 0  # iterations between evaluations; 0 evaluates only at the end
# Stop with an error after this many updates in a row were skipped for non-finite losses or gradients, saving
# the last good state as model_last_good.pth; 0 never stops.
_C.TRAIN.MAX_CONSECUTIVE_SKIPS = 20

_C.TEST = CfgNode()
_C.TEST.BATCH_SIZE = 128

_C.SOLVER = solver_defaults()


def get_cfg() -> CfgNode:
    """Return a fresh, mutable clone of the defaults; callers may merge files and overrides into it."""
    return _C.clone()
