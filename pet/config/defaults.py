"""The root config: every default of the project, cloned by `get_cfg()`."""
from pet.config.node import CfgNode
from pet.config.solver import solver_defaults

_C = CfgNode()
# Where a run writes checkpoints, metrics.json, TensorBoard files and its config.
_C.OUTPUT_DIR = "output"
# Seed of every random number generator (model init, data order); the same seed gives the same run on CPU.
_C.SEED = 0

_C.MODEL = CfgNode()
# A torchvision model, built without pretrained weights: a classifier (resnet18, mobilenet_v3_small, swin_t, ...),
# split into `backbone` + `head`; or a detector (fasterrcnn_mobilenet_v3_large_320_fpn, retinanet_resnet50_fpn,
# fcos_resnet50_fpn, ... and {fasterrcnn,retinanet,fcos}_resnet{18,34,50,101,152}_fpn), whose feature extractor
# and FPN torchvision already keep under `backbone`.
_C.MODEL.NAME = "resnet18"
# Classifiers: the number of classes. Detectors: the data set's categories + 1 (label 0 is the background).
_C.MODEL.NUM_CLASSES = 10
# Norm layers: BN keeps torchvision's BatchNorm2d; GN (GroupNorm, up to 32 groups) or FROZEN_BN
# (FrozenBatchNorm2d) replace every BatchNorm2d.
_C.MODEL.NORM = "BN"
# Stride-1 stem without max pool, for images of 8 to 64 pixels (digits, CIFAR).
_C.MODEL.SMALL_INPUT = False
_C.MODEL.DETECTION = CfgNode()
# Detectors resize each image so that its short side is MIN_SIZE and its long side at most MAX_SIZE pixels.
_C.MODEL.DETECTION.MIN_SIZE = 800
_C.MODEL.DETECTION.MAX_SIZE = 1333

_C.DATA = CfgNode()
# Classification: digits (scikit-learn's bundled 8x8 digits), image_folder, fake.
# Detection: shapes (generated circles, squares and triangles), coco (COCO-format annotations).
_C.DATA.DATASET = "digits"
# image_folder: a folder holding train/ and val/ folders of one sub-folder per class.
# coco: the folder the DATA.COCO paths are relative to. shapes: where the set is written ("": ./datasets).
_C.DATA.ROOT = ""
# Side of the square images the model sees (image_folder, fake, shapes; digits are 8x8 and kept so).
_C.DATA.IMAGE_SIZE = 8
# digits: the fraction held out for validation, split per class with SEED.
_C.DATA.VAL_FRACTION = 0.2
# fake: the number of images in the train and val sets.
_C.DATA.FAKE_SIZE = 256
_C.DATA.NUM_WORKERS = 0
# image_folder: open every image's header before training, so that an unreadable file stops the run at once
# (a few minutes for ImageNet-sized sets; turn off there).
_C.DATA.CHECK_IMAGES = True
_C.DATA.SHAPES = CfgNode()
# shapes: images per split, and at most this many shapes per image (drawn from SEED, written on first use).
_C.DATA.SHAPES.NUM_TRAIN = 1000
_C.DATA.SHAPES.NUM_VAL = 200
_C.DATA.SHAPES.MAX_SHAPES = 3
_C.DATA.COCO = CfgNode()
# coco: images folders and annotation files (COCO JSON), relative to DATA.ROOT unless absolute.
_C.DATA.COCO.TRAIN_IMAGES = "train2017"
_C.DATA.COCO.TRAIN_JSON = "annotations/instances_train2017.json"
_C.DATA.COCO.VAL_IMAGES = "val2017"
_C.DATA.COCO.VAL_JSON = "annotations/instances_val2017.json"

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
