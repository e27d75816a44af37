"""The run's pieces decided from the config: the mixed-precision dtype of each device, and the combinations of
sharding and mixed precision that are refused."""
import logging

import pytest
import torch

from pet.config import ConfigError
from pet.engine.runner import amp_dtype_for, check_unit_support


@pytest.mark.parametrize("name, device, dtype", [("AUTO", "cpu", torch.bfloat16), ("AUTO", "cuda", torch.float16),
                                                 ("bfloat16", "cuda", torch.bfloat16),
                                                 ("float16", "cuda", torch.float16)])
def test_the_amp_dtype_of_each_device(caplog, name, device, dtype):
    with caplog.at_level(logging.WARNING, logger="pet.engine.runner"):
        assert amp_dtype_for(name, torch.device(device)) == dtype
    assert not caplog.records


def test_float16_on_cpu_is_taken_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="pet.engine.runner"):
        assert amp_dtype_for("float16", torch.device("cpu")) == torch.float16
    (record,) = caplog.records
    assert record.getMessage().startswith("SOLVER.AMP.DTYPE float16 on CPU: torch's CPU float16 kernels are many "
                                          "times slower than float32")


def test_fsdp_refuses_float16_and_per_loss_optimizers():
    with pytest.raises(ConfigError, match=r"SOLVER.AMP.DTYPE float16 cannot be combined with DISTRIBUTED.STRATEGY"):
        check_unit_support([], torch.float16, world_size=2, sharded=True)
    check_unit_support([], torch.bfloat16, world_size=2, sharded=True)  # bfloat16 needs no GradScaler
    check_unit_support([], torch.float16, world_size=2, sharded=False)
