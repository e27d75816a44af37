"""MODEL.NORM: keep torchvision's BatchNorm2d layers, or swap them for GroupNorm, FrozenBatchNorm2d or
SyncBatchNorm (batch statistics over all processes of a DDP run)."""
import math
from typing import Callable, Dict

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from pet.errors import ConfigError

NORM_LAYERS: Dict[str, Callable[[int], nn.Module]] = {
    "GN": lambda channels: nn.GroupNorm(math.gcd(32, channels), channels),
    # Buffers only: a frozen norm has no trainable parameters, so it adds no parameter group.
    "FROZEN_BN": FrozenBatchNorm2d,
}


def apply_norm(model: nn.Module, norm: str, name: str) -> None:
    """Replace every BatchNorm2d of `model` as MODEL.NORM says (BN: leave them)."""
    norm = norm.upper()
    if norm == "SYNCBN":
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            raise ConfigError(f"MODEL.NORM = 'SyncBN' replaces BatchNorm layers, and {name} has none; use BN")
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the root; the weights are kept
    elif norm != "BN":
        replace_batch_norms(model, NORM_LAYERS[norm], name, norm)


def check_norm_device(norm: str, device_type: str) -> None:
    """torch's SyncBatchNorm has no CPU kernels: refuse it there before training."""
    if norm.upper() == "SYNCBN" and device_type == "cpu":
        raise ConfigError("MODEL.NORM = 'SyncBN' needs GPUs (torch's SyncBatchNorm has no CPU kernels); on CPU, "
                          "GN gives batch-independent statistics")


def replace_batch_norms(model: nn.Module, make_norm: Callable[[int], nn.Module], name: str, norm: str) -> None:
    """Swap every BatchNorm2d of `model` for `make_norm(channels)`, freshly initialised (weight 1, bias 0)."""
    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, child_name, make_norm(child.num_features))
                replaced += 1
    if not replaced:
        raise ConfigError(f"MODEL.NORM = {norm!r} replaces BatchNorm2d layers, and {name} has none; use BN")


def check_batch_statistics(model: nn.Module, batch_size: int) -> None:
    """Batch norm needs at least two values per channel in training: refuse one image per micro-batch for a model
    with BatchNorm layers before training, rather than failing in the first forward pass."""
    if batch_size == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ConfigError("TRAIN.BATCH_SIZE = 1 with BatchNorm layers: batch statistics need at least 2 images per "
                          "process; use a larger batch, or MODEL.NORM GN or FROZEN_BN")
