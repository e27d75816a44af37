"""What differs between a classification run and a detection run, in one place: the data sets that fit, how the
losses are computed, and how the model is evaluated. MODEL.NAME selects the task."""
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pet.config import get_cfg
from pet.config.run_keys import CLASSIFICATION_DATASETS, DETECTION_DATASETS
from pet.engine.evaluation.classification import ClassifierResults, evaluate_classifier, per_class_line
from pet.engine.evaluation.coco import evaluate_detector
from pet.engine.loop.update_step import LossFunction
from pet.errors import ConfigError
from pet.imports import is_import_path
from pet.models import model_task

logger = logging.getLogger(__name__)


def classification_losses(model: nn.Module, batch: Any) -> Dict[str, torch.Tensor]:
    """Cross-entropy of a classifier on an (images, labels) batch."""
    images, labels = batch
    return {"loss_cls": F.cross_entropy(model(images), labels)}


def model_losses(model: nn.Module, batch: Any) -> Dict[str, torch.Tensor]:
    """The losses a model computes itself, as torchvision's detectors do in training mode: `model(*batch)`
    must return a dict of scalar losses (their sum is minimised, each one is logged)."""
    losses = model(*batch)
    if not isinstance(losses, dict) or not all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in losses.values()):
        raise TypeError(f"{type(getattr(model, 'module', model)).__name__} returned {type(losses).__name__} in "
                        "training mode; the trainer needs a dict of scalar loss tensors")
    return losses


Evaluate = Callable[[nn.Module, DataLoader, Dataset, torch.device], Dict[str, float]]


@dataclass(frozen=True)
class Task:
    """A kind of run: its data sets, loss function and evaluation (model, loader, full val set, device)."""

    name: str
    datasets: Tuple[str, ...]
    loss_fn: LossFunction
    evaluate: Evaluate


def evaluate_classification(model: nn.Module, loader: DataLoader, dataset: Dataset,
                            device: torch.device) -> ClassifierResults:
    """A classifier's results with its confusion matrix, labelled with the data set's class names (label numbers
    for outputs beyond them), and its per-class accuracy logged: in training and in tools/test_net.py alike."""
    results = evaluate_classifier(model, loader, device)
    names = class_names(dataset) or []
    classes = results.confusion.shape[0]
    results.class_names = (names + [str(label) for label in range(len(names), classes)])[:classes]
    logger.info(per_class_line(results))
    return results


CLASSIFICATION = Task("classification", CLASSIFICATION_DATASETS, classification_losses, evaluate_classification)
# A detector computes its own losses in training mode; COCO box mAP scores its predictions.
DETECTION = Task("detection", DETECTION_DATASETS, model_losses, evaluate_detector)


def task_of(cfg: Any) -> Task:
    """The task MODEL.NAME selects (for a user's model builder, the data set's); a data set of the other task is a
    `ConfigError`. A user's data set builder serves classifiers (image tensor, label) or a detector's task."""
    kind = model_task(cfg.MODEL.NAME) or ("detection" if cfg.DATA.DATASET in DETECTION_DATASETS else
                                          "classification")
    task = DETECTION if kind == "detection" else CLASSIFICATION
    if cfg.DATA.DATASET not in task.datasets and not is_import_path(cfg.DATA.DATASET):
        raise ConfigError(f"DATA.DATASET = {cfg.DATA.DATASET!r} does not fit the {task.name} model MODEL.NAME = "
                          f"{cfg.MODEL.NAME!r}; allowed: {' | '.join(task.datasets)}")
    # Keys of the other task would be ignored without a word: refuse them.
    if task is DETECTION and cfg.MODEL.SMALL_INPUT:
        raise ConfigError(f"MODEL.SMALL_INPUT = True applies to classifiers, not to the detector {cfg.MODEL.NAME}; "
                          "set MODEL.DETECTION.MIN_SIZE / MAX_SIZE instead")
    defaults = get_cfg().MODEL.DETECTION
    changed = [key for key in defaults if cfg.MODEL.DETECTION[key] != defaults[key]]
    if task is CLASSIFICATION and changed:
        raise ConfigError(f"MODEL.DETECTION.{changed[0]} = {cfg.MODEL.DETECTION[changed[0]]!r} applies to detectors, "
                          f"not to the classifier {cfg.MODEL.NAME}; leave it at {defaults[changed[0]]!r}")
    return task


def check_num_classes(cfg: Any, dataset: Dataset, other: Optional[Dataset] = None) -> None:
    """MODEL.NUM_CLASSES must fit the data before training: a detector needs one class per category plus the
    background, a classifier at least one output per class. With `other` (the other split), both splits must
    name the same classes in the same order, or labels would mean different things in each."""
    names = class_names(dataset)
    if other is not None and names is not None and class_names(other) != names:
        raise ConfigError(f"the training and validation sets have different classes: {names} and "
                          f"{class_names(other)} (DATA.DATASET = {cfg.DATA.DATASET!r}, DATA.ROOT = {cfg.DATA.ROOT!r})")
    if names is None:
        return
    if hasattr(dataset, "category_names") and cfg.MODEL.NUM_CLASSES != len(names) + 1:
        raise ConfigError(f"MODEL.NUM_CLASSES = {cfg.MODEL.NUM_CLASSES} does not fit the data set's "
                          f"{len(names)} categories ({', '.join(names)}); a detector needs "
                          f"{len(names) + 1} (label 0 is the background)")
    if not hasattr(dataset, "category_names") and cfg.MODEL.NUM_CLASSES < len(names):
        raise ConfigError(f"MODEL.NUM_CLASSES = {cfg.MODEL.NUM_CLASSES} is smaller than the data set's "
                          f"{len(names)} classes; set it to {len(names)}")


def class_names(dataset: Dataset) -> Optional[List[str]]:
    """The class (or detection category) names of a data set, in label order; None when it has none."""
    names = getattr(dataset, "category_names", None) or getattr(dataset, "classes", None)
    return list(names) if names is not None else None
