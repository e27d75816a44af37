"""MODEL.NAME decides the task: a torchvision classifier or a detector, built by its own module."""
from typing import Any

from torch import nn

from pet.errors import ConfigError
from pet.models.classification import build_classifier, classification_model_names
from pet.models.detection import build_detector, is_detection_model


def model_task(name: str) -> str:
    """"detection" or "classification"; a name torchvision does not know is a `ConfigError`."""
    if is_detection_model(name):
        return "detection"
    if name in classification_model_names():
        return "classification"
    raise ConfigError(f"MODEL.NAME = {name!r} is invalid; allowed: a torchvision classification model (resnet18, "
                      "mobilenet_v3_small, efficientnet_b0, swin_t, vit_b_16, ...) or detector "
                      "(fasterrcnn_mobilenet_v3_large_320_fpn, retinanet_resnet50_fpn, fcos_resnet18_fpn, ...)")


def build_model(cfg: Any) -> nn.Module:
    """The classifier or detector that MODEL.NAME names."""
    task = model_task(cfg.MODEL.NAME)
    return build_detector(cfg) if task == "detection" else build_classifier(cfg)
