"""A user's own model and data set builders, named in configs by import path (`tests.user_builders:tiny_net`)."""
import torch
from torch import nn
from torch.utils.data import TensorDataset


def tiny_net(cfg):
    """A small CNN for 8x8 images: what a user's `my_pkg.models:build_net` returns."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, cfg.MODEL.NUM_CLASSES))


def bright_or_dark(cfg, split):
    """Two classes: images brighter or darker than 0; 256 training and 64 validation images."""
    generator = torch.Generator().manual_seed(cfg.SEED + (split == "val"))
    labels = torch.randint(0, 2, (256 if split == "train" else 64,), generator=generator)
    images = torch.randn(len(labels), 3, 8, 8, generator=generator) * 0.5 + (labels.float() * 2 - 1)[:, None, None,
                                                                                                          None]
    return TensorDataset(images, labels)


def not_a_model(cfg):
    return "a string"
