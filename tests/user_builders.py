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


class PoisonedSGD(torch.optim.SGD):
    """SGD whose third update writes NaN into the weights: a fault no gradient check can see (a NaN momentum
    setting did this before KWARGS values were checked)."""

    def step(self, closure=None):
        loss = super().step(closure)
        self.updates = getattr(self, "updates", 0) + 1
        if self.updates == 3:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return loss


class BuggySGD(torch.optim.SGD):
    """An optimizer class with a bug in its constructor."""

    def __init__(self, params, lr=0.1, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.state_size = len(None)  # TypeError: a bug, not a setting


class PickySGD(torch.optim.SGD):
    """An optimizer class that refuses a value, as torch's own classes do (ValueError)."""

    def __init__(self, params, lr=0.1, momentum=0.0, weight_decay=0.0):
        raise ValueError("PickySGD needs a momentum of 0.5")
