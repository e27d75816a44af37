"""Data sets and loaders from the DATA and TRAIN config nodes."""
import os
from typing import Any, Callable, List, Optional, Tuple

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from pet.config.run_keys import DETECTION_DATASETS
from pet.data.coco import CocoDetection, collate_detection
from pet.data.digits import DigitsDataset
from pet.data.image_folder import ImageFolderDataset
from pet.data.sampler import ResumableBatchSampler
from pet.data.seeded import SeededSamples, samples_are_random
from pet.data.shapes import ensure_shapes, shapes_paths
from pet.errors import ConfigError
from pet.imports import call_builder, is_import_path

SHAPES_DEFAULT_ROOT = "datasets"
OWN_IMAGE_SIZES = {"digits": 8, "image_folder": 224, "fake": 224, "shapes": 128}  # what DATA.IMAGE_SIZE 0 means
SHRUNK = 4  # images this many times larger than DATA.IMAGE_SIZE are said to be shrunk


def image_size(cfg: Any) -> int:
    """The image side a run trains at: DATA.IMAGE_SIZE, or with 0 the data set's own (0 where the data set keeps
    its images' sizes: COCO, a user's builder)."""
    return cfg.DATA.IMAGE_SIZE or OWN_IMAGE_SIZES.get(cfg.DATA.DATASET, 0)


def build_dataset(cfg: Any, split: str) -> Dataset:
    """The `split` ("train" or "val") of the data set named by DATA.DATASET."""
    data = cfg.DATA
    if is_import_path(data.DATASET):
        return build_imported_dataset(cfg, split)
    if data.DATASET == "digits":
        try:
            return DigitsDataset(split, val_fraction=data.VAL_FRACTION, seed=cfg.SEED)
        except ValueError as e:  # scikit-learn's split needs every class in both parts
            raise ConfigError(f"DATA.VAL_FRACTION = {data.VAL_FRACTION!r} leaves a split without every class: "
                              f"{' '.join(str(e).split())}") from None
    if data.DATASET == "image_folder":
        return ImageFolderDataset(data.ROOT, split, image_size(cfg), check_images=data.CHECK_IMAGES)
    if data.DATASET == "shapes":
        shapes = data.SHAPES
        folder = ensure_shapes(data.ROOT or SHAPES_DEFAULT_ROOT, cfg.SEED, image_size(cfg),
                               {"train": shapes.NUM_TRAIN, "val": shapes.NUM_VAL}, shapes.MAX_SHAPES)
        return CocoDetection(*shapes_paths(folder, split))
    if data.DATASET == "coco":
        return CocoDetection(*coco_paths(data, split))
    # torchvision's FakeData: random images, the same for a given index; the val split uses other indices.
    side = image_size(cfg)
    fake = datasets.FakeData(size=data.FAKE_SIZE, image_size=(3, side, side),
                             num_classes=cfg.MODEL.NUM_CLASSES, transform=transforms.ToTensor(),
                             random_offset=0 if split == "train" else data.FAKE_SIZE)
    fake.random_samples = False  # it seeds each image by its index itself
    return fake


def data_warnings(cfg: Any, train_set: Dataset) -> List[str]:
    """What a user should know about the data before training: today, images shrunk far below their own size
    (an image folder trained at a few pixels because DATA.IMAGE_SIZE was left small)."""
    if not isinstance(train_set, ImageFolderDataset) or not train_set.samples:
        return []
    side = image_size(cfg)
    path = train_set.samples[0][0]
    try:
        with Image.open(path) as image:  # the header only
            width, height = image.size
    except Exception:  # noqa: BLE001 - an unreadable image is DATA.CHECK_IMAGES's to report
        return []
    if min(width, height) < SHRUNK * side:
        return []
    return [f"DATA.IMAGE_SIZE = {cfg.DATA.IMAGE_SIZE}: the images are trained at {side}x{side} pixels, but "
            f"{path} is {width}x{height}; is that meant? (0 trains image folders at 224)"]


def build_imported_dataset(cfg: Any, split: str) -> Dataset:
    """`builder(cfg, split)` for the builder DATA.DATASET names; anything without a length and items is a
    `ConfigError`."""
    dataset = call_builder(cfg.DATA.DATASET, "DATA.DATASET", "cfg, split", cfg, split)
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise ConfigError(f"DATA.DATASET = {cfg.DATA.DATASET!r} returned a {type(dataset).__name__} for the {split} "
                          "split, not a data set (an object with __len__ and __getitem__)")
    return dataset


def coco_paths(data: Any, split: str) -> Tuple[str, str]:
    """(images folder, annotation file) of a COCO split; a missing one is a `ConfigError` naming its key."""
    paths = []
    for key in (f"{split.upper()}_IMAGES", f"{split.upper()}_JSON"):
        path = os.path.join(data.ROOT, data.COCO[key])
        if not os.path.exists(path):
            raise ConfigError(f"DATA.COCO.{key} = {data.COCO[key]!r}: {path} does not exist "
                              f"(DATA.ROOT = {data.ROOT!r})")
        paths.append(path)
    return paths[0], paths[1]


def collate_fn(cfg: Any) -> Optional[Callable]:
    """Detection batches stay lists (images differ in size); classification uses the default stacking."""
    return collate_detection if cfg.DATA.DATASET in DETECTION_DATASETS else None


def build_train_loader(cfg: Any, dataset: Dataset, rank: int = 0, world_size: int = 1, start_iter: int = 0,
                       start_position: Optional[Tuple[int, int]] = None, pin_memory: bool = False) -> DataLoader:
    """An endless loader of micro-batches for this process, starting at update `start_iter`; with
    `start_position` (epoch, samples taken: what a checkpoint holds), at that sample of the shuffled order, whatever
    the number of processes, batch and accumulation of the run that stopped there.

    With DATA.NUM_WORKERS > 0, samples are read and decoded in that many worker processes, which stay alive across
    epochs and each keep two batches ready ahead of the update; `pin_memory` (for a CUDA run) puts the batches in
    page-locked memory, so their copy to the GPU overlaps the update."""
    seeded = samples_are_random(dataset)  # augmentations drawn per (seed, epoch, sample): they resume exactly
    sampler = ResumableBatchSampler(len(dataset), cfg.TRAIN.BATCH_SIZE, cfg.SOLVER.ACCUMULATION.STEPS, rank,
                                    world_size, seed=cfg.SEED, start_iter=start_iter, start_position=start_position,
                                    tag_epochs=seeded)
    if seeded:
        dataset = SeededSamples(dataset, cfg.SEED)
    # Its own generator: starting the loader must not draw from the global RNG, which a resume restores.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATA.NUM_WORKERS, collate_fn=collate_fn(cfg),
                      persistent_workers=cfg.DATA.NUM_WORKERS > 0, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(cfg.SEED + rank))


def build_val_loader(cfg: Any, dataset: Dataset, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> DataLoader:
    """This process's share of the validation set (every world_size-th sample), in order, each sample once."""
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    return DataLoader(shard, batch_size=cfg.TEST.BATCH_SIZE, shuffle=False, num_workers=cfg.DATA.NUM_WORKERS,
                      collate_fn=collate_fn(cfg), pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(cfg.SEED))
