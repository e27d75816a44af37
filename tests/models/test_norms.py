"""MODEL.NORM SyncBN: every BatchNorm becomes a SyncBatchNorm with the same names and weights, and it is refused on
CPU, where torch has no SyncBatchNorm kernels."""
import pytest
import torch
from torch import nn

from pet.config import ConfigError, get_cfg
from pet.models import build_model
from pet.models.norms import check_norm_device


def resnet18(norm):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.NAME", "resnet18", "MODEL.NORM", norm])
    torch.manual_seed(0)
    return build_model(cfg)


def test_sync_bn_replaces_every_batch_norm_and_keeps_names_and_weights():
    plain, synced = resnet18("BN"), resnet18("SyncBN")
    kinds = {type(m) for m in synced.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert kinds == {nn.SyncBatchNorm}
    assert plain.state_dict().keys() == synced.state_dict().keys()
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in synced.state_dict().items())


def test_sync_bn_is_refused_on_cpu_only():
    with pytest.raises(ConfigError, match=r"MODEL.NORM = 'SyncBN' needs GPUs"):
        check_norm_device("SyncBN", "cpu")
    check_norm_device("SyncBN", "cuda")
    check_norm_device("BN", "cpu")
