"""Weight EMA: the average equals a float64 hand computation of its formula, ramp included; swapping it in and
out leaves the model's own tensors; its state resumes."""
import math

import pytest
import torch
from torch import nn

from pet.solver.optimizers.ema import WeightEMA


def model_with_bn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def train_steps(model, steps, ema=None):
    """Random updates of every parameter and of the batch-norm statistics (a forward pass in training mode)."""
    generator = torch.Generator().manual_seed(1)
    history = []
    for _ in range(steps):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=generator))
            model(torch.randn(8, 3, generator=generator))
        history.append({name: t.detach().double().clone() for name, t in model.state_dict().items()})
        if ema is not None:
            ema.update()
    return history


@pytest.mark.parametrize("warmup", [0, 5])
def test_the_average_is_the_formula(warmup):
    model = model_with_bn()
    start = {name: t.detach().double().clone() for name, t in model.state_dict().items() if t.is_floating_point()}
    ema = WeightEMA(model, decay=0.9, warmup_iters=warmup)
    history = train_steps(model, 7, ema)
    averaged = ema.averaged_state()
    for name, value in start.items():
        expected = value
        for n, step in enumerate(history, start=1):
            d = 0.9 * (1 - math.exp(-n / warmup)) if warmup else 0.9
            expected = d * expected + (1 - d) * step[name]
        torch.testing.assert_close(averaged[name].double(), expected, rtol=1e-6, atol=1e-6, msg=name)
    assert averaged["1.num_batches_tracked"] == 7  # integer buffers are copied
    assert ema.updates == 7


def test_the_average_is_swapped_in_and_out():
    model = model_with_bn()
    ema = WeightEMA(model, decay=0.5, warmup_iters=0)
    train_steps(model, 3, ema)
    own = {name: t.clone() for name, t in model.state_dict().items()}
    with ema.swapped_in():
        for name, t in model.state_dict().items():
            assert torch.equal(t, ema.averaged_state()[name]), name
    assert all(torch.equal(t, own[name]) for name, t in model.state_dict().items())


def test_the_state_resumes_and_refuses_another_model():
    model = model_with_bn()
    ema = WeightEMA(model, 0.99, 10)
    train_steps(model, 4, ema)
    resumed = WeightEMA(model_with_bn(), 0.99, 10)
    resumed.load_state_dict(ema.state_dict())
    assert resumed.updates == 4
    assert all(torch.equal(a, b) for a, b in zip(resumed.average, ema.average))
    with pytest.raises(ValueError, match="the EMA holds other tensors"):
        WeightEMA(nn.Linear(3, 4)).load_state_dict(ema.state_dict())


def test_the_swap_covers_integer_buffers_too():
    model = model_with_bn()
    ema = WeightEMA(model, decay=0.5, warmup_iters=0)
    train_steps(model, 3, ema)
    train_steps(model, 2)  # the model moves on (its batch counter too), the average does not
    assert model[1].num_batches_tracked == 5
    with ema.swapped_in():
        assert model[1].num_batches_tracked == 3  # the average's counter, as it would be saved and exported
    assert model[1].num_batches_tracked == 5
