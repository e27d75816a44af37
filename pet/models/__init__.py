"""Model builders: torchvision classifiers split into `backbone` + `head`, and torchvision detectors."""
from typing import Any

from torch import nn

from pet.models.classification import Classifier, build_classifier, classification_model_names
from pet.models.detection import build_detector, detection_model_names, is_detection_model


def build_model(cfg: Any) -> nn.Module:
    """The classifier or detector that MODEL.NAME names."""
    return build_detector(cfg) if is_detection_model(cfg.MODEL.NAME) else build_classifier(cfg)


__all__ = ["Classifier", "build_classifier", "build_detector", "build_model", "classification_model_names",
           "detection_model_names", "is_detection_model"]
