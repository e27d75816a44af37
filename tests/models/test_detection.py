"""torchvision detectors by name: losses in training mode, predictions in eval mode, the backbone under
`backbone`, and the parameter groups the rules give them."""
import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from pet.config import ConfigError, get_cfg
from pet.models import build_model, detection_model_names, model_task
from pet.solver import Optimizer, format_param_groups



def detector_cfg(name, **solver):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.NAME", name, "MODEL.NUM_CLASSES", 4, "MODEL.DETECTION.MIN_SIZE", 64,
                         "MODEL.DETECTION.MAX_SIZE", 64])
    for key, value in solver.items():
        cfg.SOLVER.OPTIMIZER[key] = value
    return cfg


def targets():
    return [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]


@pytest.mark.parametrize("name, losses, heads", [
    ("fcos_resnet18_fpn", {"classification", "bbox_regression", "bbox_ctrness"}, {"head"}),
    ("retinanet_resnet18_fpn", {"classification", "bbox_regression"}, {"head"}),
    ("fasterrcnn_resnet18_fpn", {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
     {"rpn", "roi_heads"}),
])
def test_losses_in_training_and_boxes_in_eval(name, losses, heads):
    torch.manual_seed(0)
    model = build_model(detector_cfg(name))
    assert model_task(name) == "detection"
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"backbone"} | heads
    assert any(n.startswith("backbone.body.") for n, _ in model.named_parameters())  # ResNet
    assert any(n.startswith("backbone.fpn.") for n, _ in model.named_parameters())  # and FPN, both in the backbone
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    model.train()
    out = model(images, targets())
    assert set(out) == losses and all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    sum(out.values()).backward()
    model.eval()
    with torch.no_grad():
        predictions = model(images)
    assert len(predictions) == 2 and all({"boxes", "labels", "scores"} <= set(p) for p in predictions)


def test_torchvision_builders_by_name():
    assert {"fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn"} <= set(
        detection_model_names())
    model = build_model(detector_cfg("fasterrcnn_mobilenet_v3_large_320_fpn"))
    assert model.roi_heads.box_predictor.cls_score.out_features == 4
    assert (model.transform.min_size, model.transform.max_size) == ((64,), 64)
    # No pretrained weights: every backbone layer trains, with real BatchNorm2d (torchvision freezes them only
    # when it loads weights).
    assert all(p.requires_grad for p in model.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())


def test_fasterrcnn_groups_backbone_norm_and_bias_by_the_rules():
    cfg = detector_cfg("fasterrcnn_mobilenet_v3_large_320_fpn", BASE_LR=0.02, BACKBONE_LR_FACTOR=0.1,
                       BIAS_LR_FACTOR=2.0, WEIGHT_DECAY=1e-4)
    optimizer = Optimizer(build_model(cfg), cfg.SOLVER.OPTIMIZER).build()
    rows = [line.split() for line in format_param_groups(optimizer).splitlines()[1:]]
    # By hand: the backbone's weights, its BatchNorm2d layers and its biases (squeeze-excitation fc and FPN convs)
    # at 0.02 x 0.1 = 0.002 (biases x 2 = 0.004, no decay); the heads' weights at 0.02 and biases at 0.04. Tensor
    # and parameter counts as torchvision builds this detector with 4 classes.
    assert rows == [["backbone.weight", "66", "4,408,840", "0.002", "0.0001"],
                    ["backbone.norm", "92", "24,400", "0.002", "0"],
                    ["backbone.bias", "20", "6,104", "0.004", "0"],
                    ["weight", "7", "14,523,136", "0.02", "0.0001"],
                    ["bias", "7", "2,399", "0.04", "0"]]
    members = {name: group["name"] for group in optimizer.param_groups for name in group["param_names"]}
    assert members["backbone.body.0.1.weight"] == members["backbone.body.16.1.bias"] == "backbone.norm"
    assert members["backbone.body.4.block.2.fc1.bias"] == members["backbone.fpn.layer_blocks.1.0.bias"] == \
        "backbone.bias"
    assert members["rpn.head.conv.0.0.bias"] == members["roi_heads.box_predictor.bbox_pred.bias"] == "bias"
    assert members["roi_heads.box_head.fc6.weight"] == "weight"


def test_frozen_batch_norms_have_no_parameters_and_no_group():
    cfg = detector_cfg("fasterrcnn_mobilenet_v3_large_320_fpn", BACKBONE_LR_FACTOR=0.1)
    cfg.MODEL.NORM = "FROZEN_BN"
    model = build_model(cfg)
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(not list(m.parameters()) for m in frozen)  # buffers only
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    assert "backbone.norm" not in {g["name"] for g in optimizer.param_groups}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_group_norm_in_fcos_heads_is_a_norm_group_outside_the_backbone():
    cfg = detector_cfg("fcos_resnet18_fpn", BACKBONE_LR_FACTOR=0.5, WEIGHT_DECAY_NORM=0.0)
    model = build_model(cfg)
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    head_norms = [p for m in model.head.modules() if isinstance(m, nn.GroupNorm) for p in m.parameters()]
    assert len(head_norms) == 2 * 2 * 4  # classification and regression towers: 4 GroupNorms each
    group = next(g for g in optimizer.param_groups if any(p is head_norms[0] for p in g["params"]))
    assert all(any(p is q for q in group["params"]) for p in head_norms)
    assert group["name"] == "bias+norm"  # head biases come first in the module walk; not a backbone group
    assert group["weight_decay"] == 0.0 and group["lr"] == cfg.SOLVER.OPTIMIZER.BASE_LR


@pytest.mark.parametrize("name, message", [
    ("maskrcnn_resnet50_fpn", r"MODEL\.NAME = 'maskrcnn_resnet50_fpn' is not a supported detector; allowed: "
                              r"fasterrcnn_mobilenet_v3_large_320_fpn, .*fcos_resnet50_fpn"),
    ("fcos_resnet19_fpn", r"MODEL\.NAME = 'fcos_resnet19_fpn' is invalid; allowed: .* or detector"),
])
def test_unknown_or_unsupported_names(name, message):
    with pytest.raises(ConfigError, match=message):
        build_model(detector_cfg(name))
