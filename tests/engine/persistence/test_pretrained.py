"""MODEL.WEIGHTS: torchvision's weight layout mapped onto backbone + head, tensors of another shape left as they
were initialised, everything reported, and files that fit nothing refused."""
import logging

import pytest
import torch
import torchvision

from pet.config import ConfigError, get_cfg
from pet.engine.persistence.pretrained import load_pretrained
from pet.errors import CheckpointError
from pet.models import build_model


def digits_resnet18():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.NAME", "resnet18", "MODEL.NUM_CLASSES", 10])
    torch.manual_seed(1)
    return build_model(cfg)


def test_torchvision_weights_fill_the_backbone_and_a_head_of_another_size_stays(tmp_path, caplog):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=1000)  # ImageNet's head: 1000 classes
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = digits_resnet18()
    head_before = model.head.weight.clone()
    with caplog.at_level(logging.INFO, logger="pet.engine.persistence.pretrained"):
        load_pretrained(model, str(path))
    ours = model.state_dict()
    for name, tensor in reference.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(ours[f"backbone.{name}"], tensor), name
    assert torch.equal(model.head.weight, head_before)  # 10 x 512 here, 1000 x 512 there
    assert "loaded 120 of the model's 122 tensors" in caplog.text
    assert "2 another shape, left initialised: head.weight (1000, 512) -> (10, 512), head.bias (1000,) -> (10,)" \
        in caplog.text


def test_weights_of_this_project_load_whole_and_unknown_tensors_are_listed(tmp_path, caplog):
    source = digits_resnet18()
    torch.nn.init.constant_(source.head.weight, 0.5)
    path = tmp_path / "model_final.pth"
    torch.save({"model": {**source.state_dict(), "extra.weight": torch.ones(2)}, "iteration": 600}, path)
    model = digits_resnet18()
    with caplog.at_level(logging.INFO, logger="pet.engine.persistence.pretrained"):
        load_pretrained(model, str(path))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())
    assert "loaded 122 of the model's 122 tensors" in caplog.text
    assert "1 in the file but not in the model, ignored: extra.weight" in caplog.text


def test_a_file_that_fits_nothing_and_a_missing_file_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.ones(3, 3)}, path)
    with pytest.raises(CheckpointError, match=r"none of its 1 tensors fits MODEL.NAME \(e.g. encoder.weight\)"):
        load_pretrained(digits_resnet18(), str(path))
    with pytest.raises(ConfigError, match=r"MODEL.WEIGHTS = '.*gone.pth' does not exist"):
        load_pretrained(digits_resnet18(), str(tmp_path / "gone.pth"))
