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


class FaultyNet(nn.Module):
    """A small GroupNorm CNN for 8x8 images that fails on purpose, as PET_TEST_FAULT says: `kill:RANK:ITER` (SIGKILL),
    `raise:RANK:ITER` (an exception) or `hang:RANK:ITER` (sleeps), in the forward pass of training iteration ITER on
    process RANK. With PET_TEST_FAULT_ONCE=PATH it fails only while PATH does not exist, and creates it first: the
    first launch fails, its relaunch does not."""

    def __init__(self, num_classes, output_dir):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, num_classes)
        self.output_dir = output_dir
        self.calls = None

    def forward(self, images):
        if self.training:
            if self.calls is None:  # the iteration this launch started at, from the run's own launch record
                import json
                import os

                record = os.path.join(self.output_dir, ".launch.json")
                self.calls = json.load(open(record))["resumed_from"] if os.path.exists(record) else 0
            self.fail_if_asked(self.calls)
            self.calls += 1
        return self.head(self.body(images))

    @staticmethod
    def fail_if_asked(iteration):
        import os
        import signal
        import time

        fault = os.environ.get("PET_TEST_FAULT")
        if not fault:
            return
        kind, rank, at = fault.split(":")
        if int(rank) != int(os.environ.get("RANK", "0")) or int(at) != iteration:
            return
        once = os.environ.get("PET_TEST_FAULT_ONCE")
        if once:
            if os.path.exists(once):
                return
            open(once, "w").close()
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "hang":
            time.sleep(3600)
        raise RuntimeError(f"injected fault at iteration {iteration}")


def faulty_net(cfg):
    """`FaultyNet` for MODEL.NAME."""
    return FaultyNet(cfg.MODEL.NUM_CLASSES, cfg.OUTPUT_DIR)
