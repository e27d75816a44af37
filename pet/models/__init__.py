"""Model builders: torchvision classifiers split into `backbone` + `head`, and torchvision detectors."""
from pet.models.build import build_model, model_task
from pet.models.classification import Classifier, build_classifier, classification_model_names
from pet.models.detection import build_detector, detection_model_names, is_detection_model

__all__ = ["Classifier", "build_classifier", "build_detector", "build_model", "classification_model_names",
           "detection_model_names", "is_detection_model", "model_task"]
