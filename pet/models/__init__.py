"""Model builders: torchvision classifiers split into `backbone` + `head`."""
from pet.models.classification import Classifier, build_classifier, classification_model_names

__all__ = ["Classifier", "build_classifier", "classification_model_names"]
