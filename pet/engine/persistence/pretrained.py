"""MODEL.WEIGHTS: start a run from trained weights (fine-tuning), whatever wrote them.

A checkpoint of this project, an FSDP checkpoint folder, or a plain state dict (torchvision's weight files name
their tensors without this project's `backbone.` / `head.` split, and are mapped onto it). Tensors whose shape
differs from the model's (a head for another number of classes) stay as initialised; every tensor loaded, left or
ignored is reported once at the start.
"""
import logging
import os
from typing import Dict, List, Tuple

import torch
from torch import nn

from pet.engine.persistence.checkpointer import checkpoint_weights
from pet.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

# Where torchvision keeps a classifier (ResNet `fc`, MobileNet/EfficientNet `classifier`, ViT `heads`, Swin
# `head`): this project's classifiers hold it as `head`, and the rest under `backbone.`.
TORCHVISION_HEADS = ("fc.", "classifier.", "heads.", "head.")


def model_key(name: str, own: Dict[str, torch.Tensor]) -> str:
    """The model's name for a saved tensor `name`: itself, or torchvision's layout mapped onto backbone + head."""
    if name in own:
        return name
    for head in TORCHVISION_HEADS:
        if name.startswith(head) and f"head.{name[len(head):]}" in own:
            return f"head.{name[len(head):]}"
    return f"backbone.{name}" if f"backbone.{name}" in own else name


def match_weights(saved: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor]
                  ) -> Tuple[Dict[str, torch.Tensor], List[str], List[str], List[str]]:
    """(tensors to load by the model's names, names of another shape, model tensors not in `saved`, saved
    tensors the model does not have)."""
    loadable: Dict[str, torch.Tensor] = {}
    other_shape: Dict[str, str] = {}
    unexpected: List[str] = []
    for name, tensor in saved.items():
        key = model_key(name, own)
        if key not in own:
            unexpected.append(name)
        elif own[key].shape != tensor.shape:
            other_shape[key] = f"{key} {tuple(tensor.shape)} -> {tuple(own[key].shape)}"
        else:
            loadable[key] = tensor
    missing = [name for name in own if name not in loadable and name not in other_shape]
    return loadable, list(other_shape.values()), missing, unexpected


def load_pretrained(model: nn.Module, path: str) -> None:
    """Load the tensors of `path` that fit `model` (by name and shape) and report the rest; a file of which no
    tensor fits is a `CheckpointError`."""
    if not os.path.exists(path):
        raise ConfigError(f"MODEL.WEIGHTS = {path!r} does not exist")
    try:
        saved = checkpoint_weights(path)
    except CheckpointError as e:
        raise CheckpointError(f"MODEL.WEIGHTS: {e}") from None
    own = model.state_dict()
    loadable, other_shape, missing, unexpected = match_weights(saved, own)
    if not loadable:
        raise CheckpointError(f"MODEL.WEIGHTS = {path!r}: none of its {len(saved)} tensors fits MODEL.NAME "
                              f"(e.g. {next(iter(saved))}); is it the weights of another model?")
    model.load_state_dict(loadable, strict=False)
    logger.info("MODEL.WEIGHTS %s: loaded %d of the model's %d tensors", path, len(loadable), len(own))
    for label, names in (("another shape, left initialised", other_shape),
                         ("not in the file, left initialised", missing),
                         ("in the file but not in the model, ignored", unexpected)):
        if names:
            logger.info("  %d %s: %s%s", len(names), label, ", ".join(names[:6]), " ..." if len(names) > 6 else "")
