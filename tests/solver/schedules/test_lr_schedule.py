"""The pure schedule functions, with numbers computed by hand (shown in comments)."""
import math
import random

import pytest
import torch

from pet.lr_policies import (POLICIES, chain_factor, cosine_factor, noam_factor, one_cycle_factor, poly_factor,
                             step_cosine_factor, step_factor)
from pet.solver.schedules.lr_schedule import LRSchedule, cosine_ramp, warmup_factor

ARGUMENTS = dict(steps=(30, 60), gamma=0.1, lr_pow=0.9, min_lr_factor=0.0)


def schedule(policy="STEP", **overrides) -> LRSchedule:
    """A schedule of 100 updates with a LINEAR warmup from 0.1 over 10; the policy's arguments from ARGUMENTS."""
    values = dict(ARGUMENTS, **overrides)
    keys = POLICIES[policy].keys if policy in POLICIES else ()
    arguments = {name: values[name] for name in (key.lower() for key in keys)}
    return LRSchedule(policy, 100, arguments, warmup_iters=10, warmup_factor=0.1, warmup_method="LINEAR")


@pytest.mark.parametrize("method, k, expected", [
    ("CONSTANT", 0, 0.1), ("CONSTANT", 5, 0.1), ("CONSTANT", 9, 0.1), ("CONSTANT", 10, 1.0),
    ("LINEAR", 0, 0.1), ("LINEAR", 5, 0.55), ("LINEAR", 8, 0.82), ("LINEAR", 10, 1.0),  # 0.1*0.2 + 0.8 = 0.82
    ("EXP", 0, 0.1), ("EXP", 5, 0.31622776601683794), ("EXP", 10, 1.0),  # 0.1 ** 0.5 = sqrt(0.1)
])
def test_warmup_factor(method, k, expected):
    assert warmup_factor(k, 10, 0.1, method) == pytest.approx(expected, rel=1e-12)


def test_no_warmup_when_w_is_zero():
    assert warmup_factor(0, 0, 0.1, "LINEAR") == 1.0


@pytest.mark.parametrize("k, expected", [(0, 1.0), (29, 1.0), (30, 0.1), (59, 0.1), (60, 0.01), (100, 0.01),
                                         (10**6, 0.01)])
def test_step_decays_at_the_milestone_itself(k, expected):
    assert step_factor(k, 100, (30, 60), 0.1) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("k, m, expected", [
    (0, 0.0, 1.0), (25, 0.0, 0.8535533905932737),  # (1 + cos(pi/4)) / 2 = (1 + 0.70710678) / 2
    (50, 0.0, 0.5), (75, 0.0, 0.14644660940672627), (100, 0.0, 0.0), (150, 0.0, 0.0), (10**6, 0.0, 0.0),
    (50, 0.1, 0.55), (100, 0.1, 0.1), (400, 0.1, 0.1),  # 0.1 + 0.9 * 0.5
])
def test_cosine(k, m, expected):
    assert cosine_factor(k, 100, m) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("k, power, m, expected", [
    (0, 0.9, 0.0, 1.0), (50, 2.0, 0.0, 0.25), (75, 2.0, 0.0, 0.0625), (50, 1.0, 0.0, 0.5),
    (50, 0.9, 0.0, 0.5358867312681466),  # 0.5 ** 0.9 = exp(0.9 * ln 0.5)
    (50, 2.0, 0.2, 0.4), (100, 2.0, 0.2, 0.2), (120, 2.0, 0.2, 0.2), (100, 0.9, 0.0, 0.0),
])
def test_poly(k, power, m, expected):
    assert poly_factor(k, 100, power, m) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_poly_past_the_end_is_a_real_number_that_holds():
    # Pet's POLY computed (1 - k/M) ** 0.9 past the end: a complex number.
    for k in range(100, 200):
        value = poly_factor(k, 100, 0.9, 0.05)
        assert isinstance(value, float) and value == 0.05


@pytest.mark.parametrize("k, m, expected", [
    (0, 0.0, 1.0), (39, 0.0, 1.0), (40, 0.0, 0.1), (59, 0.0, 0.1),  # steps until the last milestone
    (60, 0.0, 0.1), (70, 0.0, 0.08535533905932737),  # 0.1 * (1 + cos(pi/4)) / 2
    (80, 0.0, 0.05), (100, 0.0, 0.0), (101, 0.0, 0.0), (500, 0.0, 0.0),
    (100, 0.1, 0.01), (80, 0.1, 0.055),  # 0.1 * (0.1 + 0.9 * 0.5)
])
def test_step_cosine(k, m, expected):
    assert step_cosine_factor(k, 100, (40, 60), 0.1, m) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_step_cosine_with_one_milestone_starts_the_cosine_at_full_lr():
    # n = 1: GAMMA ** 0 = 1 before the cosine; at k = S[-1] the lr is the base lr, then it decays to m.
    assert step_cosine_factor(50, 100, (50,), 0.1, 0.0) == 1.0
    assert step_cosine_factor(75, 100, (50,), 0.1, 0.0) == pytest.approx(0.5)


@pytest.mark.parametrize("policy, k, expected", [
    ("CONSTANT", 5, 0.55), ("CONSTANT", 45, 1.0), ("CONSTANT", 99, 1.0),
    ("STEP", 5, 0.55), ("STEP", 45, 0.1),
    ("COSINE", 5, 0.55 * 0.9938441702975689),  # LINEAR warmup 0.55 times (1 + cos(0.05 pi)) / 2
    ("POLY", 5, 0.55 * 0.95 ** 0.9),
    ("STEP_COSINE", 5, 0.55), ("STEP_COSINE", 80, 0.05),
])
def test_the_schedule_multiplies_warmup_and_policy(policy, k, expected):
    assert schedule(policy=policy, steps=(40, 60))(k) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("policy", ["CONSTANT", "STEP", "COSINE", "POLY", "STEP_COSINE"])
def test_every_policy_holds_after_the_end(policy):
    s = schedule(policy=policy, min_lr_factor=0.01)
    last = s(100)
    assert all(s(k) == last for k in range(100, 300))
    assert all(isinstance(s(k), float) and math.isfinite(s(k)) for k in range(0, 300))


def test_a_schedule_depends_on_k_alone_not_on_the_order_of_calls():
    s = schedule(policy="COSINE")
    order = list(range(120))
    random.Random(0).shuffle(order)  # any order of evaluation, as a resume or a plot asks for k directly
    got = {k: s(k) for k in order}
    expected = {k: ((0.1 * (1 - k / 10) + k / 10) if k < 10 else 1.0) * 0.5 * (1 + math.cos(math.pi * min(k, 100) / 100))
                for k in range(120)}  # LINEAR warmup from 0.1 over 10, then the cosine over M = 100
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown policy 'CYCLIC'"):
        schedule(policy="CYCLIC")(0)
    with pytest.raises(ValueError, match="unknown warmup method 'SQRT'"):
        warmup_factor(1, 10, 0.1, "SQRT")


@pytest.mark.parametrize("k, expected", [
    (0, 0.04),  # 1 / DIV_FACTOR 25
    (29, 1.0),  # the peak at PCT_START * M - 1, as torch's OneCycleLR
    (64, 0.5 + 0.5 * 4e-6),  # halfway down (35 of 70 updates) from 1 to 1 / (25 * 1e4): (1 + 4e-6) / 2
    (99, 4e-6), (150, 4e-6),  # the end at M - 1, then held
])
def test_one_cycle(k, expected):
    assert one_cycle_factor(k, 100, 0.3, 25.0, 1e4) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("total, pct, div, final_div", [(100, 0.3, 25.0, 1e4), (37, 0.25, 10.0, 100.0),
                                                       (1000, 0.05, 4.0, 1e3)])
def test_one_cycle_is_torchs_one_cycle_lr(total, pct, div, final_div):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.5, total_steps=total, pct_start=pct,
                                                         div_factor=div, final_div_factor=final_div,
                                                         anneal_strategy="cos", cycle_momentum=False)
    for k in range(total):
        assert 0.5 * one_cycle_factor(k, total, pct, div, final_div) == pytest.approx(
            optimizer.param_groups[0]["lr"], rel=1e-12), k
        optimizer.step()
        if k < total - 1:  # torch refuses to step past its total
            torch_schedule.step()


@pytest.mark.parametrize("k, expected", [
    (0, 0.1), (4, 0.5), (9, 1.0),  # (k + 1) / W with W = 10
    (39, 0.5),  # sqrt(10 / 40)
    (99, 0.31622776601683794),  # sqrt(10 / 100)
    (100, 0.3146583877637763), (500, 0.3146583877637763),  # held from M on: sqrt(10 / 101)
])
def test_noam(k, expected):
    assert noam_factor(k, 100, 10) == pytest.approx(expected, rel=1e-12)


FLAT_COSINE = (("CONSTANT", 0, 30), ("COSINE", 30, 100))
STEP_POLY = (("STEP", 0, 50), ("POLY", 50, 100))


@pytest.mark.parametrize("phases, k, expected", [
    (FLAT_COSINE, 0, 1.0), (FLAT_COSINE, 29, 1.0), (FLAT_COSINE, 30, 1.0), (FLAT_COSINE, 65, 0.5),
    (FLAT_COSINE, 100, 0.0), (FLAT_COSINE, 200, 0.0),
    # STEP phase: milestones 20 and 40 of STEPS (60 lies in the next phase and is ignored), then POLY (power 1)
    # from the carried 0.01 down to 0 over 50 updates.
    (STEP_POLY, 19, 1.0), (STEP_POLY, 20, 0.1), (STEP_POLY, 40, 0.01), (STEP_POLY, 50, 0.01),
    (STEP_POLY, 75, 0.005), (STEP_POLY, 100, 0.0),
])
def test_chain(phases, k, expected):
    assert chain_factor(k, 100, phases, (20, 40, 60), 0.1, 1.0, 0.0) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_chain_holds_in_gaps_and_before_the_first_phase():
    phases = (("COSINE", 10, 20), ("CONSTANT", 30, 40))
    assert [chain_factor(k, 100, phases, (), 0.1, 1.0, 0.2) for k in (0, 9, 15, 20, 25, 35, 90)] == pytest.approx(
        [1.0, 1.0, 0.6, 0.2, 0.2, 0.2, 0.2])  # cosine from 1 to m = 0.2, halfway 0.6


def test_cosine_ramp_for_momentum_and_weight_decay():
    assert [cosine_ramp(k, 100, 0.9, 0.99) for k in (0, 50, 100, 130)] == pytest.approx([0.9, 0.945, 0.99, 0.99])
