"""torchvision detectors by name, without pretrained weights.

torchvision keeps a detector's feature extractor and FPN under `backbone` (its heads under `rpn` / `roi_heads` /
`head`), so the solver's BACKBONE_LR_FACTOR and the `backbone.*` group names apply unchanged. Besides
torchvision's own builders, `{fasterrcnn,retinanet,fcos}_resnet{18,34,50,101,152}_fpn` are assembled from
torchvision's parts the way its ResNet-50 builders are, so that small detectors train on a CPU.

In training mode a detector takes (images, targets) and returns a dict of losses; in eval mode it takes images
and returns one dict of boxes, labels and scores per image.
"""
import re
from typing import Any, Dict, List

import torchvision
from torch import nn
from torchvision.models import detection
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from pet.errors import ConfigError
from pet.models.norms import apply_norm

# Families the COCO boxes-only data can train: masks and keypoints need annotations the data sets do not load,
# and SSD fixes its own input size and augmentation.
FAMILIES = ("fasterrcnn", "retinanet", "fcos")
ASSEMBLED = re.compile(r"^(fasterrcnn|retinanet|fcos)_(resnet(?:18|34|50|101|152))_fpn$")
DETECTOR_CLASSES = {"fasterrcnn": detection.FasterRCNN, "retinanet": detection.RetinaNet, "fcos": detection.FCOS}


def detection_model_names() -> List[str]:
    """torchvision's detector builders of the supported families (the assembled ResNet names come on top)."""
    return sorted(name for name in torchvision.models.list_models(module=detection) if name.startswith(FAMILIES))


def is_detection_model(name: str) -> bool:
    """Whether MODEL.NAME names a detector (a supported one or not): what selects the detection task."""
    return name in torchvision.models.list_models(module=detection) or ASSEMBLED.match(name) is not None


def build_detector(cfg: Any) -> nn.Module:
    """The detector named by MODEL.NAME, randomly initialised, with MODEL.NUM_CLASSES classes (background
    included) and MODEL.NORM applied to its BatchNorm2d layers."""
    name = cfg.MODEL.NAME
    kwargs: Dict[str, Any] = {"num_classes": cfg.MODEL.NUM_CLASSES, "min_size": cfg.MODEL.DETECTION.MIN_SIZE,
                              "max_size": cfg.MODEL.DETECTION.MAX_SIZE}
    assembled = ASSEMBLED.match(name)
    if name in detection_model_names():
        # No weights: torchvision then trains every backbone layer and uses BatchNorm2d rather than frozen norms.
        model = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs)
    elif assembled:
        model = assemble_resnet_detector(assembled.group(1), assembled.group(2), kwargs)
    else:
        raise ConfigError(f"MODEL.NAME = {name!r} is not a supported detector; allowed: "
                          f"{', '.join(detection_model_names())}, or {{{','.join(FAMILIES)}}}_resnet"
                          "{18,34,50,101,152}_fpn")
    apply_norm(model, cfg.MODEL.NORM, name)
    return model


def assemble_resnet_detector(family: str, resnet: str, kwargs: Dict[str, Any]) -> nn.Module:
    """A detector of `family` on a ResNet-FPN backbone, with the FPN levels torchvision's ResNet-50 builders use:
    C2-C5 + max pool for Faster R-CNN, C3-C5 + P6/P7 for RetinaNet and FCOS."""
    if family == "fasterrcnn":
        levels: Dict[str, Any] = {"returned_layers": [1, 2, 3, 4]}
    else:
        levels = {"returned_layers": [2, 3, 4], "extra_blocks": LastLevelP6P7(256, 256)}
    backbone = resnet_fpn_backbone(backbone_name=resnet, weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5,
                                   **levels)
    return DETECTOR_CLASSES[family](backbone, **kwargs)
