"""Data sets and loaders from the DATA and TRAIN config nodes."""
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from pet.data.digits import DigitsDataset
from pet.data.image_folder import ImageFolderDataset
from pet.data.sampler import ResumableBatchSampler


def build_dataset(cfg: Any, split: str) -> Dataset:
    """The `split` ("train" or "val") of the data set named by DATA.DATASET."""
    data = cfg.DATA
    if data.DATASET == "digits":
        return DigitsDataset(split, val_fraction=data.VAL_FRACTION, seed=cfg.SEED)
    if data.DATASET == "image_folder":
        return ImageFolderDataset(data.ROOT, split, data.IMAGE_SIZE, check_images=data.CHECK_IMAGES)
    # torchvision's FakeData: random images, the same for a given index; the val split uses other indices.
    return datasets.FakeData(size=data.FAKE_SIZE, image_size=(3, data.IMAGE_SIZE, data.IMAGE_SIZE),
                             num_classes=cfg.MODEL.NUM_CLASSES, transform=transforms.ToTensor(),
                             random_offset=0 if split == "train" else data.FAKE_SIZE)


def build_train_loader(cfg: Any, dataset: Dataset, rank: int = 0, world_size: int = 1,
                       start_iter: int = 0) -> DataLoader:
    """An endless loader of micro-batches for this process, starting at update `start_iter`."""
    sampler = ResumableBatchSampler(len(dataset), cfg.TRAIN.BATCH_SIZE, cfg.SOLVER.ACCUMULATION.STEPS, rank,
                                    world_size, seed=cfg.SEED, start_iter=start_iter)
    # Its own generator: starting the loader must not draw from the global RNG, which a resume restores.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATA.NUM_WORKERS,
                      persistent_workers=cfg.DATA.NUM_WORKERS > 0, generator=torch.Generator().manual_seed(cfg.SEED))


def build_val_loader(cfg: Any, dataset: Dataset, rank: int = 0, world_size: int = 1) -> DataLoader:
    """This process's share of the validation set (every world_size-th sample), in order, each sample once."""
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    return DataLoader(shard, batch_size=cfg.TEST.BATCH_SIZE, shuffle=False, num_workers=cfg.DATA.NUM_WORKERS,
                      generator=torch.Generator().manual_seed(cfg.SEED))
