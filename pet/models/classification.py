"""torchvision classification models by name, without pretrained weights, as `backbone` + `head`.

The split puts every parameter of the feature extractor under `backbone.` so that the solver's
BACKBONE_LR_FACTOR and backbone group names apply, and the classifier under `head.`.
"""
from typing import Any, Dict

import torch
import torchvision
from torch import nn

from pet.data.build import image_size
from pet.errors import ConfigError
from pet.models.norms import apply_norm

# Where torchvision keeps the classifier: ResNet/RegNet `fc`, MobileNet/EfficientNet/ConvNeXt `classifier`,
# ViT `heads`, Swin `head`.
HEAD_ATTRIBUTES = ("fc", "classifier", "heads", "head")

class Classifier(nn.Module):
    """`head(backbone(images))`: logits of shape (batch, classes)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def classification_model_names() -> list:
    """Every classification model name torchvision can build."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_classifier(cfg: Any) -> Classifier:
    """The model named by MODEL.NAME, randomly initialised, with MODEL.NUM_CLASSES outputs."""
    name = cfg.MODEL.NAME
    if name not in classification_model_names():
        raise ConfigError(f"MODEL.NAME = {name!r} is invalid; allowed: a torchvision classification model, e.g. "
                          "resnet18, resnet50, mobilenet_v3_small, efficientnet_b0, swin_t, vit_b_16")
    kwargs: Dict[str, Any] = {"weights": None, "num_classes": cfg.MODEL.NUM_CLASSES}
    if name.startswith("vit_"):
        patch = int(name.rsplit("_", 1)[-1])  # vit_b_16: 16-pixel patches
        size = image_size(cfg)
        if size == 0:
            size = 224  # a user's data set: torchvision's own size
        if size % patch:
            raise ConfigError(f"MODEL.NAME = {name!r} cuts images into {patch}-pixel patches, and the images of "
                              f"DATA.DATASET {cfg.DATA.DATASET} are {size} pixels (DATA.IMAGE_SIZE = "
                              f"{cfg.DATA.IMAGE_SIZE}): use images whose side is a multiple of {patch} (224 as "
                              "trained in torchvision), or a convolutional model")
        kwargs["image_size"] = size
    model = torchvision.models.get_model(name, **kwargs)
    apply_norm(model, cfg.MODEL.NORM, name)
    if cfg.MODEL.SMALL_INPUT:
        adapt_to_small_input(model, name)
    return split_backbone_and_head(model)


def adapt_to_small_input(model: nn.Module, name: str) -> None:
    """Give the stem stride 1 and drop its max pool, so 8- to 64-pixel images keep their detail (CIFAR-style)."""
    if isinstance(getattr(model, "conv1", None), nn.Conv2d) and hasattr(model, "maxpool"):  # ResNet family
        conv = model.conv1
        model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        return
    features = getattr(model, "features", None)
    stem = features[0][0] if isinstance(features, nn.Sequential) and isinstance(features[0], nn.Sequential) else None
    if isinstance(stem, nn.Conv2d) and stem.kernel_size == (3, 3):  # MobileNet / EfficientNet-style stems
        stem.stride = (1, 1)
        return
    raise ConfigError(f"MODEL.SMALL_INPUT = True is supported for ResNet-style (conv1 + maxpool) and "
                      f"MobileNet/EfficientNet-style (features[0]) models, not {name}")


def split_backbone_and_head(model: nn.Module) -> Classifier:
    """Move the classifier attribute of a torchvision model into `head`; the rest becomes `backbone`."""
    for attribute in HEAD_ATTRIBUTES:
        head = getattr(model, attribute, None)
        if isinstance(head, nn.Module):
            setattr(model, attribute, nn.Identity())
            return Classifier(model, head)
    raise ConfigError(f"MODEL.NAME = {type(model).__name__}: no classifier attribute among {HEAD_ATTRIBUTES}")
