"""MODEL.NAME decides the task: a torchvision classifier or a detector, built by its own module, or a user's own
model named by the import path of its builder (`my_pkg.models:build_my_net`, called with the config)."""
import logging
from typing import Any, Optional

from torch import nn

from pet.errors import ConfigError
from pet.imports import call_builder, is_import_path
from pet.models.classification import build_classifier, classification_model_names
from pet.models.detection import build_detector, is_detection_model
from pet.models.speed import unwrap_compiled

logger = logging.getLogger(__name__)


def model_task(name: str) -> Optional[str]:
    """"detection" or "classification"; None for a user's builder (the data set then decides); a name torchvision
    does not know is a `ConfigError`."""
    if is_import_path(name):
        return None
    if is_detection_model(name):
        return "detection"
    if name in classification_model_names():
        return "classification"
    raise ConfigError(f"MODEL.NAME = {name!r} is invalid; allowed: a torchvision classification model (resnet18, "
                      "mobilenet_v3_small, efficientnet_b0, swin_t, vit_b_16, ...) or detector "
                      "(fasterrcnn_mobilenet_v3_large_320_fpn, retinanet_resnet50_fpn, fcos_resnet18_fpn, ...), or "
                      "the import path of your builder (my_pkg.models:build_my_net)")


def build_model(cfg: Any) -> nn.Module:
    """The classifier or detector that MODEL.NAME names, or what the builder it names returns."""
    task = model_task(cfg.MODEL.NAME)
    if task is None:
        return build_imported_model(cfg)
    return build_detector(cfg) if task == "detection" else build_classifier(cfg)


def build_imported_model(cfg: Any) -> nn.Module:
    """`builder(cfg)` for the builder MODEL.NAME names; anything but a `torch.nn.Module` is a `ConfigError`."""
    model = call_builder(cfg.MODEL.NAME, "MODEL.NAME", "cfg", cfg)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"MODEL.NAME = {cfg.MODEL.NAME!r} returned a {type(model).__name__}, not a torch.nn.Module")
    inner = unwrap_compiled(model)
    if inner is not model:  # its state dict would carry `_orig_mod.` names; TRAIN.COMPILE compiles in place
        logger.warning("MODEL.NAME = %r returned a torch.compile'd model: its module is trained instead (set "
                       "TRAIN.COMPILE True to compile it)", cfg.MODEL.NAME)
    return inner
