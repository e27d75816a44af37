"""The pure schedule functions of SPEC §4, with numbers computed by hand (shown in comments)."""
import math

import pytest

from pet.solver.schedules import (LRSchedule, cosine_factor, poly_factor, step_cosine_factor, step_factor,
                                  warmup_factor)


def schedule(**overrides) -> LRSchedule:
    values = dict(policy="STEP", total_iters=100, steps=(30, 60), gamma=0.1, warmup_iters=10, warmup_factor=0.1,
                  warmup_method="LINEAR", lr_pow=0.9, min_lr_factor=0.0)
    values.update(overrides)
    return LRSchedule(**values)


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
    assert step_factor(k, (30, 60), 0.1) == pytest.approx(expected, rel=1e-12)


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
    assert step_cosine_factor(k, (40, 60), 0.1, 100, m) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_step_cosine_with_one_milestone_starts_the_cosine_at_full_lr():
    # n = 1: GAMMA ** 0 = 1 before the cosine; at k = S[-1] the lr is the base lr, then it decays to m.
    assert step_cosine_factor(50, (50,), 0.1, 100, 0.0) == 1.0
    assert step_cosine_factor(75, (50,), 0.1, 100, 0.0) == pytest.approx(0.5)


@pytest.mark.parametrize("policy, k, expected", [
    ("STEP", 5, 0.55), ("STEP", 45, 0.1),
    ("COSINE", 5, 0.55 * 0.9938441702975689),  # LINEAR warmup 0.55 times (1 + cos(0.05 pi)) / 2
    ("POLY", 5, 0.55 * 0.95 ** 0.9),
    ("STEP_COSINE", 5, 0.55), ("STEP_COSINE", 80, 0.05),
])
def test_the_schedule_multiplies_warmup_and_policy(policy, k, expected):
    assert schedule(policy=policy, steps=(40, 60))(k) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("policy", ["STEP", "COSINE", "POLY", "STEP_COSINE"])
def test_every_policy_holds_after_the_end(policy):
    s = schedule(policy=policy, min_lr_factor=0.01)
    last = s(100)
    assert all(s(k) == last for k in range(100, 300))
    assert all(isinstance(s(k), float) and math.isfinite(s(k)) for k in range(0, 300))


def test_a_schedule_is_a_pure_function():
    s = schedule(policy="COSINE")
    forward = [s(k) for k in range(120)]
    backward = [s(k) for k in reversed(range(120))][::-1]
    assert forward == backward


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown policy 'CYCLIC'"):
        schedule(policy="CYCLIC")(0)
    with pytest.raises(ValueError, match="unknown warmup method 'SQRT'"):
        warmup_factor(1, 10, 0.1, "SQRT")
