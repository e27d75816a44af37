"""The lr range test's math: the exponential sweep, the bias-corrected smoothing, the stop, the suggestion; and on
a quadratic, where SGD diverges for lr > 2/h, the stop lands at the divergence."""
import math

import pytest
import torch

from pet.solver.schedules.lr_range import LRSweep


def test_the_lr_rises_exponentially_from_start_to_end():
    sweep = LRSweep(1e-6, 1.0, 7)
    assert [sweep.lr(i) for i in range(7)] == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], rel=1e-12)


def test_the_smoothed_loss_is_the_bias_corrected_moving_average():
    losses = [3.0, 2.0, 2.5, 1.0, 1.5]
    sweep = LRSweep(1e-3, 1.0, 10, smoothing=0.9)
    for loss in losses:
        sweep.record(loss)
    average, expected = 0.0, []
    for i, loss in enumerate(losses):  # by hand: a = 0.9 a + 0.1 loss, divided by 1 - 0.9^(i+1)
        average = 0.9 * average + 0.1 * loss
        expected.append(average / (1 - 0.9 ** (i + 1)))
    assert sweep.smoothed == pytest.approx(expected, rel=1e-12)
    assert sweep.smoothed[0] == 3.0  # the first point is the first loss, not a tenth of it


def test_the_sweep_stops_when_the_smoothed_loss_exceeds_four_times_its_best():
    sweep = LRSweep(1e-3, 1.0, 10, smoothing=0.0)  # no smoothing: the raw losses decide
    assert [sweep.record(loss) for loss in (2.0, 1.0, 0.5, 1.9, 2.0)] == [False] * 5  # 2.0 = 4 x 0.5 is not above
    assert sweep.record(2.01) and sweep.diverged


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_a_non_finite_loss_stops_the_sweep(bad):
    sweep = LRSweep(1e-3, 1.0, 10)
    sweep.record(1.0)
    assert sweep.record(bad)
    assert sweep.curve()["loss"] == [1.0, None] and sweep.curve()["stop_lr"] == sweep.lr(1)


def test_the_suggestion_is_the_steepest_descent_against_log_lr():
    sweep = LRSweep(1e-6, 1.0, 61, smoothing=0.0)
    for i in range(61):  # a loss falling fastest at lr = 1e-3 (tanh is steepest at 0)
        sweep.record(1.0 - math.tanh(2 * (math.log10(sweep.lr(i)) + 3)))
    assert sweep.suggestion() == pytest.approx(1e-3, rel=1e-9)


def test_too_few_points_give_no_suggestion():
    sweep = LRSweep(1e-3, 1.0, 100)
    for loss in (1.0, 1.0, math.inf):
        sweep.record(loss)
    assert sweep.suggestion() is None


@pytest.mark.parametrize("arguments", [(0.0, 1.0, 10), (1.0, 0.5, 10), (1e-3, 1.0, 1), (1e-3, math.inf, 10)])
def test_a_sweep_without_range_or_updates_is_refused(arguments):
    with pytest.raises(ValueError):
        LRSweep(*arguments)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_a_quadratic_the_stop_is_at_two_over_the_curvature(seed):
    # loss = h/2 |w - x|^2 with x ~ N(0, I): SGD without momentum multiplies w's distance by |1 - lr h| per update,
    # so it diverges exactly for lr > 2/h.
    h = 4.0
    generator = torch.Generator().manual_seed(seed)
    w = torch.full((10,), 3.0, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=0.0)
    sweep = LRSweep(1e-7, 10.0, 400)
    for i in range(sweep.iters):
        optimizer.param_groups[0]["lr"] = sweep.lr(i)
        x = torch.randn(10, generator=generator, dtype=torch.float64)
        loss = h / 2 * ((w - x) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if sweep.record(loss.item()):
            break
    stop = sweep.lrs[-1]
    assert sweep.diverged and (2 / h) / 1.5 <= stop <= (2 / h) * 1.5
    assert sweep.suggestion() < stop


def test_a_loss_that_falls_again_after_blowing_up_is_not_suggested():
    # The loss falls steadily to update 60, blows up to 15 for 8 updates, then drops to 2.5 (a model that partly
    # recovers, as ResNet-18 on the digits does with one thread): the smoothed curve falls steeply again there,
    # short of 4x its best, and that fall must not be suggested.
    sweep = LRSweep(1e-6, 10.0, 100)
    losses = [2.0] * 20 + [2.0 - 1.5 * i / 40 for i in range(40)] + [15.0] * 8 + [2.5] * 32
    for loss in losses:
        assert not sweep.record(loss)  # never 4x its best: the sweep runs on
    lowest = min(range(len(sweep.smoothed)), key=sweep.smoothed.__getitem__)
    assert sweep.suggestion() <= sweep.lrs[lowest]
    assert sweep.suggestion() >= sweep.lrs[20]  # within the steady fall
