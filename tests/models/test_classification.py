"""torchvision classifiers as backbone + head, small-input stems, norm choices, and errors naming MODEL keys."""
import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from pet.config import ConfigError, get_cfg
from pet.models import build_classifier
from pet.solver import Optimizer


def model_cfg(**model):
    cfg = get_cfg()
    for key, value in model.items():
        cfg.MODEL[key] = value
    return cfg


@pytest.mark.parametrize("name, head_type", [("resnet18", nn.Linear), ("mobilenet_v3_small", nn.Sequential)])
def test_backbone_and_head(name, head_type):
    model = build_classifier(model_cfg(NAME=name, NUM_CLASSES=7, SMALL_INPUT=True))
    names = [n for n, _ in model.named_parameters()]
    assert all(n.startswith(("backbone.", "head.")) for n in names)
    assert isinstance(model.head, head_type)
    model.eval()
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 7)


def test_backbone_lr_factor_applies_to_the_backbone_only():
    cfg = model_cfg(NAME="resnet18")
    cfg.SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR = 0.1
    optimizer = Optimizer(build_classifier(cfg), cfg.SOLVER.OPTIMIZER).build()
    lrs = {n: g["lr"] for g in optimizer.param_groups for n in g["param_names"]}
    assert lrs["head.weight"] == pytest.approx(0.001) and lrs["head.bias"] == pytest.approx(0.001)
    assert lrs["backbone.conv1.weight"] == pytest.approx(0.0001)
    assert lrs["backbone.layer4.1.bn2.bias"] == pytest.approx(0.0001)


def test_small_input_stem_keeps_resolution():
    model = build_classifier(model_cfg(NAME="resnet18", SMALL_INPUT=True)).backbone
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert isinstance(model.maxpool, nn.Identity)
    mobile = build_classifier(model_cfg(NAME="mobilenet_v3_small", SMALL_INPUT=True)).backbone
    assert mobile.features[0][0].stride == (1, 1)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "densenet121"])
@pytest.mark.parametrize("norm, norm_type", [("GN", nn.GroupNorm), ("FROZEN_BN", FrozenBatchNorm2d),
                                             ("BN", nn.BatchNorm2d)])
def test_norm_choice(name, norm, norm_type):
    model = build_classifier(model_cfg(NAME=name, NORM=norm))
    norms = [m for m in model.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, norm_type) for m in norms)


def test_frozen_norms_have_no_trainable_parameters():
    model = build_classifier(model_cfg(NAME="resnet18", NORM="FROZEN_BN"))
    optimizer = Optimizer(model, get_cfg().SOLVER.OPTIMIZER).build()
    assert [g["name"] for g in optimizer.param_groups] == ["weight", "bias"]  # only the head's bias


@pytest.mark.parametrize("model, message", [
    (dict(NAME="resnet19"), r"MODEL\.NAME = 'resnet19' is invalid"),
    (dict(NAME="swin_t", NORM="GN"), r"MODEL\.NORM = 'GN' replaces BatchNorm2d layers, and swin_t has none"),
    (dict(NAME="swin_t", SMALL_INPUT=True), r"MODEL\.SMALL_INPUT = True is supported for ResNet-style"),
])
def test_bad_model_keys(model, message):
    with pytest.raises(ConfigError, match=message):
        build_classifier(model_cfg(**model))


@pytest.mark.parametrize("dataset, key, size", [("digits", 0, 8), ("fake", 40, 40), ("image_folder", 24, 24)])
def test_a_vit_refuses_images_its_patches_do_not_tile(dataset, key, size):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.NAME", "vit_b_16", "DATA.DATASET", dataset, "DATA.IMAGE_SIZE", key])
    with pytest.raises(ConfigError, match=rf"'vit_b_16' cuts images into 16-pixel patches, and the images of "
                                          rf"DATA.DATASET {dataset} are {size} pixels \(DATA.IMAGE_SIZE = {key}\): "
                                          "use images whose side is a multiple of 16"):
        build_classifier(cfg)


def test_a_vit_builds_for_images_its_patches_tile():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.NAME", "vit_b_16", "DATA.DATASET", "fake", "DATA.IMAGE_SIZE", 32])
    assert build_classifier(cfg)(torch.randn(1, 3, 32, 32)).shape == (1, 10)
