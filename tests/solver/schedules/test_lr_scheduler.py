"""`LearningRateScheduler`: config to lr, every policy x warmup, epochs, start_iter, exact resume."""
import math
import io
import logging

import pytest
import torch
from torch import nn

from pet.config import ConfigError, get_cfg
from pet.solver import LearningRateScheduler, Optimizer
from tests.toy_model import fill_grads, toy_model

# A run of 100 updates, milestones 30 and 60, 10 warmup updates from 0.1 of the base lr, base lr 0.1.
BASE = ["SOLVER.OPTIMIZER.BASE_LR", 0.1, "SOLVER.SCHEDULER.TOTAL_ITERS", 100, "SOLVER.SCHEDULER.STEPS", (30, 60),
        "SOLVER.SCHEDULER.WARM_UP_ITERS", 10, "SOLVER.SCHEDULER.WARM_UP_FACTOR", 0.1]


def make(*overrides, model=None, start_iter=0, iter_per_epoch=-1):
    cfg = get_cfg()
    cfg.merge_from_list(BASE + list(overrides))
    model = model if model is not None else nn.Linear(2, 1, bias=False)
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    return optimizer, LearningRateScheduler(optimizer, cfg.SOLVER, start_iter=start_iter,
                                            iter_per_epoch=iter_per_epoch)


def lr_history(optimizer, scheduler, updates):
    """The lr each of the next `updates` updates runs at."""
    history = []
    for _ in range(updates):
        history.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return history


# (policy, warmup method, {k: lr}), hand-computed: warmup LINEAR 0.1*(1-a)+a, EXP 0.1**(1-a), CONSTANT 0.1.
TABLE = [
    # CONSTANT: the warmup, then the base lr 0.1 for good.
    ("CONSTANT", "LINEAR", {0: 0.01, 5: 0.055, 10: 0.1, 30: 0.1, 100: 0.1, 130: 0.1}),
    ("CONSTANT", "EXP", {0: 0.01, 5: 0.031622776601683794, 10: 0.1, 60: 0.1}),
    ("STEP", "LINEAR", {0: 0.01, 5: 0.055, 10: 0.1, 29: 0.1, 30: 0.01, 59: 0.01, 60: 0.001, 100: 0.001, 130: 0.001}),
    ("STEP", "CONSTANT", {0: 0.01, 9: 0.01, 10: 0.1, 30: 0.01}),
    ("STEP", "EXP", {0: 0.01, 5: 0.031622776601683794, 10: 0.1, 60: 0.001}),
    # COSINE: 0.1 * (1 + cos(pi k / 100)) / 2; k = 5 adds the LINEAR warmup 0.55.
    ("COSINE", "LINEAR", {0: 0.01, 5: 0.1 * 0.55 * 0.9938441702975689, 50: 0.05, 75: 0.014644660940672627,
                          100: 0.0, 130: 0.0}),
    ("COSINE", "CONSTANT", {5: 0.1 * 0.1 * 0.9938441702975689, 50: 0.05}),
    ("COSINE", "EXP", {0: 0.01, 50: 0.05}),
    # POLY with LR_POW 0.9: 0.1 * (1 - k / 100) ** 0.9; 0.5 ** 0.9 = 0.5358867312681466.
    ("POLY", "LINEAR", {0: 0.01, 50: 0.05358867312681466, 100: 0.0, 150: 0.0}),
    ("POLY", "CONSTANT", {5: 0.1 * 0.1 * 0.95 ** 0.9, 50: 0.05358867312681466}),
    ("POLY", "EXP", {0: 0.01, 50: 0.05358867312681466}),
    # STEP_COSINE: 0.1 to k=30, 0.01 to k=60, then 0.01 * (1 + cos(pi (k - 60) / 40)) / 2.
    ("STEP_COSINE", "LINEAR", {0: 0.01, 29: 0.1, 30: 0.01, 59: 0.01, 60: 0.01, 80: 0.005, 100: 0.0, 101: 0.0}),
    ("STEP_COSINE", "CONSTANT", {5: 0.01, 40: 0.01}),
    ("STEP_COSINE", "EXP", {0: 0.01, 80: 0.005}),
]


@pytest.mark.parametrize("policy, method, expected", TABLE)
def test_every_policy_and_warmup_method(policy, method, expected):
    optimizer, scheduler = make("SOLVER.SCHEDULER.POLICY", policy, "SOLVER.SCHEDULER.WARM_UP_METHOD", method)
    history = lr_history(optimizer, scheduler, max(expected) + 1)
    for k, lr in expected.items():
        assert history[k] == pytest.approx(lr, rel=1e-12, abs=1e-15), k


def test_min_lr_factor_is_a_floor_per_group():
    model = toy_model()
    optimizer, scheduler = make("SOLVER.SCHEDULER.POLICY", "COSINE", "SOLVER.SCHEDULER.MIN_LR_FACTOR", 0.1,
                                "SOLVER.SCHEDULER.WARM_UP_ITERS", 0, "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.5,
                                model=model)
    lr_history(optimizer, scheduler, 150)
    # At and past M each group holds m times its own base lr.
    assert {g["name"]: g["lr"] for g in optimizer.param_groups} == pytest.approx({
        "embed+bias+norm": 0.01, "backbone.embed+bias+norm": 0.005, "backbone.weight": 0.005, "weight": 0.01})


def test_each_group_follows_its_own_base_lr():
    optimizer, scheduler = make("SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.5, "SOLVER.OPTIMIZER.BIAS_LR_FACTOR", 2.0,
                                model=toy_model())
    bases = [g["initial_lr"] for g in optimizer.param_groups]
    for _ in range(35):
        optimizer.step()
        scheduler.step()
    # k = 35: past warmup and the first milestone: 0.1 of each base.
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1 * b for b in bases])
    assert scheduler.get_last_lr() == pytest.approx([0.1 * b for b in bases])
    assert len(set(bases)) > 2


def test_epoch_units():
    # 10 epochs of 10 updates: M = 100; STEPS (3, 6) epochs = (30, 60); WARM_UP_EPOCHS 0.5 = 5 updates.
    optimizer, scheduler = make("SOLVER.SCHEDULER.TOTAL_EPOCHS", 10, "SOLVER.SCHEDULER.STEPS", (3, 6),
                                "SOLVER.SCHEDULER.WARM_UP_EPOCHS", 0.5, iter_per_epoch=10)
    assert (scheduler.schedule.total_iters, scheduler.schedule.arguments["steps"], scheduler.schedule.warmup_iters) == (
        100, (30, 60), 5)
    history = lr_history(optimizer, scheduler, 70)
    assert history[2] == pytest.approx(0.1 * (0.1 * 0.6 + 0.4))  # a = 2/5
    assert (history[5], history[29], history[30], history[60]) == pytest.approx((0.1, 0.1, 0.01, 0.001))


def test_warmup_epochs_work_without_total_epochs():
    # Pet silently ignored WARM_UP_EPOCHS unless TOTAL_EPOCHS was set.
    optimizer, scheduler = make("SOLVER.SCHEDULER.WARM_UP_EPOCHS", 1.0, iter_per_epoch=20)
    assert scheduler.schedule.warmup_iters == 20
    assert lr_history(optimizer, scheduler, 11)[10] == pytest.approx(0.1 * 0.55)


def test_fractional_warmup_epochs_are_rounded():
    _, scheduler = make("SOLVER.SCHEDULER.WARM_UP_EPOCHS", 0.33, iter_per_epoch=10)
    assert scheduler.schedule.warmup_iters == 3


@pytest.mark.parametrize("key, value", [("SOLVER.SCHEDULER.TOTAL_EPOCHS", 10),
                                        ("SOLVER.SCHEDULER.WARM_UP_EPOCHS", 1.0)])
def test_epoch_units_without_iter_per_epoch_are_a_config_error(key, value):
    extra = ["SOLVER.SCHEDULER.STEPS", (3, 6)] if key.endswith("TOTAL_EPOCHS") else []
    with pytest.raises(ConfigError, match=rf"{key} = .* needs iter_per_epoch > 0 \(got -1\)"):
        make(key, value, *extra)


def test_epoch_steps_that_collapse_when_rounded_are_a_config_error():
    with pytest.raises(ConfigError, match=r"SOLVER\.SCHEDULER\.STEPS = \(3, 3\.1\) is invalid.*become \(6, 6\)"):
        make("SOLVER.SCHEDULER.TOTAL_EPOCHS", 10, "SOLVER.SCHEDULER.STEPS", (3, 3.1), iter_per_epoch=2)


@pytest.mark.parametrize("start_iter, expected_now, expected_next", [
    (0, 0.01, 0.019), (5, 0.055, 0.064), (35, 0.01, 0.01), (59, 0.01, 0.001), (200, 0.001, 0.001)])
def test_start_iter_sets_k(start_iter, expected_now, expected_next):
    optimizer, scheduler = make(start_iter=start_iter)
    assert scheduler.last_epoch == start_iter
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected_now)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected_next)


def test_start_iter_must_be_a_non_negative_integer():
    with pytest.raises(ValueError, match="start_iter must be an integer >= 0"):
        make(start_iter=-3)


def test_lr_is_closed_form_not_recursive():
    optimizer, scheduler = make("SOLVER.SCHEDULER.WARM_UP_ITERS", 0)
    optimizer.param_groups[0]["lr"] = 123.0  # a hand edit must not compound into later lrs
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert scheduler.get_lr() == [0.1]


def test_a_second_scheduler_on_the_same_optimizer_does_not_compound():
    optimizer, first = make(start_iter=40)
    cfg = get_cfg()
    cfg.merge_from_list(BASE)
    LearningRateScheduler(optimizer, cfg.SOLVER, start_iter=40)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # not 0.001: initial_lr is kept


def test_step_takes_no_epoch():
    _, scheduler = make()
    with pytest.raises(TypeError, match="takes no epoch"):
        scheduler.step(3)


def run(updates, model, optimizer, scheduler):
    lrs = []
    for _ in range(updates):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        fill_grads(model, seed=scheduler.last_epoch)
        optimizer.step()
        scheduler.step()
    return lrs


def round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


OVERRIDES = ["SOLVER.SCHEDULER.POLICY", "STEP_COSINE", "SOLVER.SCHEDULER.MIN_LR_FACTOR", 0.05,
             "SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.3]


@pytest.mark.parametrize("scheduler_first", [True, False])
def test_save_load_continue_matches_an_uninterrupted_run(scheduler_first):
    model = toy_model()
    optimizer, scheduler = make(*OVERRIDES, model=model)
    uninterrupted = run(120, model, optimizer, scheduler)

    model = toy_model()
    optimizer, scheduler = make(*OVERRIDES, model=model)
    first_part = run(45, model, optimizer, scheduler)
    saved = round_trip({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict()})

    resumed_model = toy_model(seed=99)
    resumed_model.load_state_dict(saved["model"])
    optimizer, scheduler = make(*OVERRIDES, model=resumed_model)  # a fresh process: start_iter 0
    if scheduler_first:
        scheduler.load_state_dict(saved["scheduler"])
        optimizer.load_state_dict(saved["optimizer"])
    else:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    second_part = run(75, resumed_model, optimizer, scheduler)

    assert first_part + second_part == uninterrupted
    reference = toy_model()
    optimizer, scheduler = make(*OVERRIDES, model=reference)
    run(120, reference, optimizer, scheduler)
    for p, q in zip(resumed_model.parameters(), reference.parameters()):
        assert torch.equal(p, q)


def test_the_first_update_after_a_resume_runs_at_the_right_lr():
    # Pet restored only the iteration: the first resumed update ran at the warmup lr.
    optimizer, scheduler = make()
    lr_history(optimizer, scheduler, 40)
    state = round_trip(scheduler.state_dict())
    fresh_optimizer, fresh = make()
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # warmup start
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 40
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # k = 40: after the first milestone
    fresh_optimizer.step()
    fresh.step()
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_loading_state_for_other_groups_names_them():
    _, scheduler = make(model=toy_model())
    state = scheduler.state_dict()
    _, other = make("SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.5, model=toy_model())
    with pytest.raises(ValueError, match=r"saved for param groups \['embed\+bias\+norm', 'weight'\].*"
                                         r"now has \['embed\+bias\+norm', 'backbone.embed\+bias\+norm'"):
        other.load_state_dict(state)


def test_lr_changes_are_logged_above_the_threshold(caplog):
    optimizer, scheduler = make("SOLVER.SCHEDULER.WARM_UP_ITERS", 0)
    with caplog.at_level(logging.INFO, logger="pet.solver.schedules.lr_scheduler"):
        lr_history(optimizer, scheduler, 70)
    changes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Changing learning rate")]
    assert changes == ["Changing learning rate 0.1000000 -> 0.0100000",
                       "Changing learning rate 0.0100000 -> 0.0010000"]


def test_a_warmup_is_not_logged_step_by_step_but_a_milestone_after_it_is(caplog):
    optimizer, scheduler = make()
    with caplog.at_level(logging.INFO, logger="pet.solver.schedules.lr_scheduler"):
        lr_history(optimizer, scheduler, 35)
    changes = [r.getMessage()[len("Changing learning rate "):] for r in caplog.records
               if r.name == "pet.solver.schedules.lr_scheduler"]
    # LINEAR warmup lrs 0.01, 0.019, ..., 0.091, 0.1: every step up to 0.091 is a ratio above 1.1, one ramp, and
    # its first step (k = 1) is not logged, as in Pet. The milestone at 30 is a jump: logged.
    assert changes == ["0.1000000 -> 0.0100000"]


def test_a_ramp_logs_its_first_big_step_only(caplog):
    optimizer, scheduler = make("SOLVER.SCHEDULER.WARM_UP_ITERS", 0, "SOLVER.SCHEDULER.POLICY", "COSINE",
                                "SOLVER.SCHEDULER.TOTAL_ITERS", 40)
    with caplog.at_level(logging.INFO, logger="pet.solver.schedules.lr_scheduler"):
        lrs = lr_history(optimizer, scheduler, 40)
    ratios = [a / b for a, b in zip(lrs, lrs[1:]) if b > 1e-7]
    first_big = next(k for k, ratio in enumerate(ratios, start=1) if ratio > 1.1)
    messages = [r.getMessage() for r in caplog.records if r.name == "pet.solver.schedules.lr_scheduler"]
    assert messages == [f"Changing learning rate {lrs[first_big - 1]:.7f} -> {lrs[first_big]:.7f}"]
    assert sum(ratio > 1.1 for ratio in ratios) > 3  # several big steps in a row, one line


def test_a_resumed_scheduler_logs_its_lr_once(caplog):
    _, scheduler = make()
    for _ in range(31):
        scheduler.step()
    state = scheduler.state_dict()
    _, resumed = make()
    caplog.clear()  # what the first scheduler logged, wherever logging was left at INFO by an earlier test
    with caplog.at_level(logging.INFO, logger="pet.solver.schedules.lr_scheduler"):
        resumed.load_state_dict(state)
    assert [r.getMessage() for r in caplog.records if r.name == "pet.solver.schedules.lr_scheduler"] == [
        "Learning rate 0.0100000 at update 31 (resumed)"]


def test_ft_factor_scales_every_lr_without_changing_the_shape():
    optimizer, scheduler = make("SOLVER.LR_SCALING.FT_FACTOR", 0.1, model=toy_model())
    base = [g["initial_lr"] for g in optimizer.param_groups]
    history = []
    for _ in range(35):
        history.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    # k = 0: warmup 0.1; k = 34: after the first milestone 0.1; both times FT_FACTOR 0.1.
    assert history[0] == pytest.approx([b * 0.1 * 0.1 for b in base])
    assert history[34] == pytest.approx([b * 0.1 * 0.1 for b in base])
    assert [g["initial_lr"] for g in optimizer.param_groups] == base  # the groups' own base lrs are untouched


@pytest.mark.parametrize("opt_type, read", [("SGD", lambda g: g["momentum"]), ("ADAMW", lambda g: g["betas"][0]),
                                            ("RMSPROP", lambda g: g["momentum"])])
def test_cyclic_momentum_moves_against_the_lr(opt_type, read):
    optimizer, scheduler = make("SOLVER.OPTIMIZER.TYPE", opt_type, "SOLVER.SCHEDULER.POLICY", "ONE_CYCLE",
                                "SOLVER.SCHEDULER.WARM_UP_ITERS", 0, "SOLVER.SCHEDULER.MOMENTUM.POLICY", "CYCLIC")
    momenta = []
    for _ in range(101):
        momenta.append(read(optimizer.param_groups[0]))
        optimizer.step()
        scheduler.step()
    # START - (START - END) * f(k): f(0) = 0.04, f(29) = 1 (the peak), f(100) = 4e-6.
    assert momenta[0] == pytest.approx(0.95 - 0.1 * 0.04)
    assert momenta[29] == pytest.approx(0.85)
    assert momenta[100] == pytest.approx(0.95 - 0.1 * 4e-6)
    if opt_type == "ADAMW":
        assert optimizer.param_groups[0]["betas"][1] == 0.999


def test_cosine_momentum_and_weight_decay_schedules():
    optimizer, scheduler = make("SOLVER.SCHEDULER.MOMENTUM.POLICY", "COSINE", "SOLVER.SCHEDULER.MOMENTUM.START", 0.9,
                                "SOLVER.SCHEDULER.MOMENTUM.END", 0.5, "SOLVER.SCHEDULER.WEIGHT_DECAY.POLICY", "COSINE",
                                "SOLVER.SCHEDULER.WEIGHT_DECAY.END_FACTOR", 10.0, "SOLVER.OPTIMIZER.WEIGHT_DECAY", 1e-3,
                                model=toy_model())
    values = []
    for _ in range(101):
        values.append([v for g in optimizer.param_groups for v in (g["momentum"], g["weight_decay"])])
        optimizer.step()
        scheduler.step()
    # Halfway through the run of 100: momentum (0.9 + 0.5) / 2, decay factor (1 + 10) / 2 on 1e-3; 0 stays 0.
    assert values[50] == pytest.approx([0.7, 0.0, 0.7, 5.5e-3])
    assert values[100] == pytest.approx([0.5, 0.0, 0.5, 1e-2])


def test_a_momentum_schedule_needs_momentum():
    with pytest.raises(ConfigError, match=r"SOLVER\.SCHEDULER\.MOMENTUM\.POLICY = 'COSINE' needs an optimizer with "
                                          r"momentum or betas; Adagrad has neither"):
        make("SOLVER.OPTIMIZER.TYPE", "ADAGRAD", "SOLVER.SCHEDULER.MOMENTUM.POLICY", "COSINE")


CHAIN = ["SOLVER.SCHEDULER.POLICY", "CHAIN", "SOLVER.SCHEDULER.CHAIN.PHASES",
         "(('STEP', 0, 50), ('COSINE', 50, 100))", "SOLVER.SCHEDULER.WARM_UP_ITERS", 5,
         "SOLVER.SCHEDULER.MOMENTUM.POLICY", "CYCLIC", "SOLVER.SCHEDULER.WEIGHT_DECAY.POLICY", "COSINE",
         "SOLVER.SCHEDULER.WEIGHT_DECAY.END_FACTOR", 0.1]


def test_chain_from_config():
    optimizer, scheduler = make(*CHAIN)
    history = lr_history(optimizer, scheduler, 101)
    # Milestones 30 in the STEP phase (60 lies in the COSINE phase); the cosine starts from 0.1 x base.
    assert [history[k] for k in (10, 29, 30, 50, 75, 100)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.005, 0.0])


@pytest.mark.parametrize("overrides", [CHAIN, ["SOLVER.SCHEDULER.POLICY", "NOAM", "SOLVER.SCHEDULER.NOAM.WARMUP_ITERS",
                                                20, "SOLVER.SCHEDULER.WARM_UP_ITERS", 0, "SOLVER.OPTIMIZER.TYPE", "ADAMW",
                                                "SOLVER.SCHEDULER.MOMENTUM.POLICY", "COSINE"]])
def test_chained_and_parameter_schedules_resume_exactly(overrides):
    def values(optimizer):
        return [(g["lr"], g.get("momentum", g.get("betas")), g["weight_decay"]) for g in optimizer.param_groups]

    model = toy_model()
    optimizer, scheduler = make(*overrides, model=model)
    uninterrupted = []
    for _ in range(90):
        uninterrupted.append(values(optimizer))
        optimizer.step()
        scheduler.step()
    optimizer, scheduler = make(*overrides, model=toy_model())
    lr_history(optimizer, scheduler, 47)
    state = round_trip({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
    optimizer, scheduler = make(*overrides, model=toy_model())
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    resumed = []
    for _ in range(43):
        resumed.append(values(optimizer))
        optimizer.step()
        scheduler.step()
    assert resumed == uninterrupted[47:]


def test_chain_phases_in_epochs():
    optimizer, scheduler = make("SOLVER.SCHEDULER.TOTAL_EPOCHS", 10, "SOLVER.SCHEDULER.POLICY", "CHAIN",
                                "SOLVER.SCHEDULER.CHAIN.PHASES", "(('CONSTANT', 0, 4), ('COSINE', 4, 10))",
                                "SOLVER.SCHEDULER.WARM_UP_ITERS", 0, iter_per_epoch=10)
    assert scheduler.schedule.arguments["phases"] == (("CONSTANT", 0, 40), ("COSINE", 40, 100))
    assert lr_history(optimizer, scheduler, 71)[70] == pytest.approx(0.05)


@pytest.mark.parametrize("overrides, message", [
    (["SOLVER.SCHEDULER.POLICY", "CHAIN"], r"CHAIN\.PHASES = \(\) is used exactly when SOLVER\.SCHEDULER\.POLICY is"),
    (["SOLVER.SCHEDULER.CHAIN.PHASES", "(('COSINE', 0, 50),)"], r"is used exactly when .* \(POLICY is 'STEP'\)"),
    (["SOLVER.SCHEDULER.POLICY", "CHAIN", "SOLVER.SCHEDULER.CHAIN.PHASES", "(('COSINE', 0, 150),)"],
     r"phases that end by SOLVER\.SCHEDULER\.TOTAL_ITERS = 100"),
    (["SOLVER.SCHEDULER.POLICY", "CHAIN", "SOLVER.SCHEDULER.CHAIN.PHASES", "(('COSINE', 0, 50), ('POLY', 40, 60))"],
     r"in order, not overlapping"),
    (["SOLVER.SCHEDULER.POLICY", "CHAIN", "SOLVER.SCHEDULER.CHAIN.PHASES", "(('NOAM', 0, 50),)"],
     r"POLICY in CONSTANT \| STEP \| COSINE \| POLY"),
])
def test_bad_chains(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make(*overrides)


def test_get_lr_and_the_groups_hold_initial_lr_x_ft_factor_x_f_k():
    optimizer, scheduler = make("SOLVER.LR_SCALING.FT_FACTOR", 0.3, "SOLVER.SCHEDULER.POLICY", "COSINE",
                                model=toy_model())
    bases = [g["initial_lr"] for g in optimizer.param_groups]
    for k in range(110):
        warmup = 0.1 * (1 - k / 10) + k / 10 if k < 10 else 1.0  # LINEAR from 0.1 over 10 updates
        factor = warmup * 0.5 * (1 + math.cos(math.pi * min(k, 100) / 100))
        expected = [base * 0.3 * factor for base in bases]
        assert scheduler.get_lr() == pytest.approx(expected, rel=1e-12, abs=1e-18)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(expected, rel=1e-12, abs=1e-18)
        assert scheduler.get_last_lr() == [g["lr"] for g in optimizer.param_groups]
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("policy, peak_k", [("ONE_CYCLE", 29), ("NOAM", 3999)])
def test_policies_with_their_own_rise_reach_base_lr_with_the_default_keys(policy, peak_k):
    cfg = get_cfg()  # the default warmup of 500 updates is not applied on top of their own rise
    cfg.merge_from_list(["SOLVER.SCHEDULER.POLICY", policy, "SOLVER.SCHEDULER.TOTAL_ITERS", 100 if policy == "ONE_CYCLE"
                         else 8000, "SOLVER.OPTIMIZER.BASE_LR", 0.1])
    optimizer = Optimizer(nn.Linear(2, 1), cfg.SOLVER.OPTIMIZER).build()
    LearningRateScheduler(optimizer, cfg.SOLVER, start_iter=peak_k)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1, rel=1e-12)


@pytest.mark.parametrize("key, value", [("WARM_UP_ITERS", 100), ("WARM_UP_EPOCHS", 1.0), ("WARM_UP_FACTOR", 0.5),
                                        ("WARM_UP_METHOD", "EXP")])
@pytest.mark.parametrize("policy", ["ONE_CYCLE", "NOAM"])
def test_a_warmup_set_for_a_policy_with_its_own_rise_is_refused(policy, key, value):
    with pytest.raises(ConfigError, match=rf"^SOLVER\.SCHEDULER\.{key} = .* is not used with SOLVER\.SCHEDULER\.POLICY = "
                                          rf"'{policy}', which rises from its own start lr"):
        cfg = get_cfg()
        cfg.merge_from_list(["SOLVER.SCHEDULER.POLICY", policy, f"SOLVER.SCHEDULER.{key}", value])
        LearningRateScheduler(Optimizer(nn.Linear(2, 1), cfg.SOLVER.OPTIMIZER).build(), cfg.SOLVER, iter_per_epoch=10)


def test_with_several_groups_the_logged_lr_names_its_group_and_ft_factor_gives_the_trained_lrs(caplog):
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))  # weights and biases: two groups
    with caplog.at_level(logging.INFO, logger="pet.solver.schedules.lr_scheduler"):
        optimizer, scheduler = make("SOLVER.SCHEDULER.WARM_UP_ITERS", 0, "SOLVER.OPTIMIZER.BIAS_LR_FACTOR", 2.0,
                                    "SOLVER.LR_SCALING.FT_FACTOR", 0.1, model=model)
        lr_history(optimizer, scheduler, 35)
    messages = [r.getMessage() for r in caplog.records if r.name == "pet.solver.schedules.lr_scheduler"]
    groups = {group["name"]: group["lr"] for group in optimizer.param_groups}
    bias = next(name for name in groups if "bias" in name)
    weight = next(name for name in groups if name != bias)
    # what torch's groups are given at update 0: the base lr x factors x FT_FACTOR (BASE_LR 0.1 in BASE)
    trained = {weight: "0.01", bias: "0.02"}
    assert messages[0] == "SOLVER.LR_SCALING.FT_FACTOR 0.1: the groups train at " + ", ".join(
        f"{name} {trained[name]}" for name in groups)
    assert messages[1] == f"Changing learning rate 0.0200000 -> 0.0020000 (group {bias}; the other groups in " \
                          "proportion)"
