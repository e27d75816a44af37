"""The speed knobs in place: names kept, torch.compile's own wrapper names read back, a failed compile run eagerly
after one warning, channels-last weights."""
import logging

import pytest
import torch
from torch import nn

from pet.models.speed import (apply_speed_knobs, compile_in_place, is_compiled, strip_compile_prefix,
                              unwrap_compiled)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def failing_backend(graph_module, example_inputs):
    raise RuntimeError("this backend compiles nothing")


def test_a_model_compiled_in_place_keeps_its_names_and_computes_what_eager_does():
    model, eager = small_net(), small_net()
    compile_in_place(model, backend="aot_eager")
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model(x), eager(x))
    assert is_compiled(model)
    assert list(model.state_dict()) == list(eager.state_dict())
    wrapped = torch.compile(small_net(), backend="aot_eager")  # torch's wrapper: what `_orig_mod.` comes from
    assert all(name.startswith("_orig_mod.") for name in wrapped.state_dict())
    assert unwrap_compiled(wrapped) is wrapped._orig_mod and unwrap_compiled(eager) is eager


def test_state_dicts_of_torch_compile_wrappers_load_into_the_plain_module():
    inner = small_net()
    outer = nn.Sequential(torch.compile(inner, backend="aot_eager"))  # a compiled submodule: the prefix mid-name
    saved = outer.state_dict()
    assert "0._orig_mod.0.weight" in saved
    plain = nn.Sequential(small_net())
    plain.load_state_dict(strip_compile_prefix(saved))
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, saved[name.replace("0.", "0._orig_mod.", 1)])


def test_a_model_that_cannot_be_compiled_runs_eagerly_after_one_warning(caplog):
    model, eager = small_net(), small_net()
    compile_in_place(model, backend=failing_backend)
    x = torch.randn(2, 3, 8, 8)
    with caplog.at_level(logging.WARNING, logger="pet.models.speed"):
        first = model(x)
        second = model(x)
    (record,) = caplog.records
    assert record.getMessage().startswith("TRAIN.COMPILE: torch.compile cannot compile Sequential (")
    assert "this backend compiles nothing" in record.getMessage() and record.getMessage().endswith("runs eagerly")
    assert not is_compiled(model)
    torch.testing.assert_close(first, eager(x))
    torch.testing.assert_close(second, eager(x))
    # Nothing ran in the failed attempt: the BatchNorm statistics moved once per call, as eager's did.
    for name, tensor in eager.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, msg=name)


class RaisesInForward(nn.Module):
    def forward(self, x):
        raise ValueError("a bug of the model itself")


def test_an_error_of_the_model_itself_is_not_taken_for_a_compile_failure():
    model = RaisesInForward()
    compile_in_place(model, backend="eager")
    with pytest.raises(ValueError, match="a bug of the model itself"):
        model(torch.zeros(1))


def test_channels_last_stores_the_kernels_nhwc_and_keeps_the_output():
    model, eager = small_net(), small_net()
    apply_speed_knobs(model, channels_last=True, compile_mode=None)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()
    assert not is_compiled(model)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model(x), eager(x), rtol=1e-5, atol=1e-6)
    assert list(model.state_dict()) == list(eager.state_dict())
