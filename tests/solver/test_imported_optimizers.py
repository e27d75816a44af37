"""SOLVER.OPTIMIZER.TYPE as an import path (schedulefree, lion_pytorch) and SOLVER.OPTIMIZER.KWARGS: the class built
by hand over hand-written groups is the oracle, on parameters and optimizer state, through a checkpoint too."""
import io

import pytest
import torch
from torch import nn
from torch.nn.utils import clip_grad_norm_

from pet.config import ConfigError, get_cfg
from pet.engine.persistence.checkpointer import OptimizerState
from pet.solver import Optimizer

schedulefree = pytest.importorskip("schedulefree")
lion_pytorch = pytest.importorskip("lion_pytorch")

LR, DECAY = 0.01, 0.05


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def hand_groups(model):
    """The default rules written out: weights decay, biases and norm parameters do not."""
    decay = [model[0].weight, model[3].weight]
    rest = [model[0].bias, model[1].weight, model[1].bias, model[3].bias]
    return [{"params": decay, "weight_decay": DECAY}, {"params": rest, "weight_decay": 0.0}]


def configured(model, type_name, *overrides):
    return configured_and_guarded(model, type_name, *overrides).optimizer


def configured_and_guarded(model, type_name, *overrides):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", type_name, "SOLVER.OPTIMIZER.BASE_LR", LR,
                         "SOLVER.OPTIMIZER.WEIGHT_DECAY", DECAY, *overrides])
    return Optimizer(model, cfg.SOLVER.OPTIMIZER).build_guarded()


HAND_BUILT = {
    "schedulefree.AdamWScheduleFree": lambda groups: schedulefree.AdamWScheduleFree(
        groups, lr=LR, betas=(0.9, 0.999), eps=1e-8, warmup_steps=3),
    "lion_pytorch.Lion": lambda groups: lion_pytorch.Lion(groups, lr=LR, betas=(0.9, 0.999)),
}
KWARGS = {"schedulefree.AdamWScheduleFree": ["SOLVER.OPTIMIZER.KWARGS.warmup_steps", 3],
          "lion_pytorch.Lion": []}


def step(model, optimizer, seed):
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator)
    optimizer.step()


def train_mode(optimizer):
    if hasattr(optimizer, "train"):
        optimizer.train()


def assert_same(model_a, opt_a, model_b, opt_b, exact=True):
    tolerance = {"rtol": 0, "atol": 0} if exact else {}
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(a, b, **tolerance)
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        state_a, state_b = opt_a.state[a], opt_b.state[b]
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            torch.testing.assert_close(state_a[key], state_b[key], **tolerance)


@pytest.mark.parametrize("path", sorted(HAND_BUILT))
def test_an_imported_class_steps_as_the_class_built_by_hand(path):
    ours_model, hand_model = small_model(), small_model()
    ours = configured(ours_model, path, *KWARGS[path])
    hand = HAND_BUILT[path](hand_groups(hand_model))
    assert type(ours) is type(hand)
    train_mode(ours), train_mode(hand)
    for seed in range(4):  # the first update and three more
        step(ours_model, ours, seed), step(hand_model, hand, seed)
    assert_same(ours_model, ours, hand_model, hand)


@pytest.mark.parametrize("path", sorted(HAND_BUILT))
def test_an_imported_class_resumes_from_its_checkpoint_exactly(path):
    model, resumed_model = small_model(), small_model()
    built = configured_and_guarded(model, path, *KWARGS[path])
    optimizer = built.optimizer
    train_mode(optimizer)
    for seed in range(3):
        step(model, optimizer, seed)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": OptimizerState(optimizer).state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed_model.load_state_dict(saved["model"])
    built = configured_and_guarded(resumed_model, path, *KWARGS[path])
    resumed = built.optimizer
    OptimizerState(resumed, built.configured_keys).load_state_dict(saved["optimizer"])  # as a run loads it
    train_mode(resumed)
    for seed in range(3, 6):
        step(model, optimizer, seed), step(resumed_model, resumed, seed)
    assert_same(model, optimizer, resumed_model, resumed)


def test_clipping_applies_to_an_imported_class_without_foreach():
    ours_model, hand_model = small_model(), small_model()
    ours = configured(ours_model, "lion_pytorch.Lion", "SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True,
                      "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 0.5)
    hand = lion_pytorch.Lion(hand_groups(hand_model), lr=LR, betas=(0.9, 0.999))
    for seed in range(3):
        step(ours_model, ours, seed)
        generator = torch.Generator().manual_seed(seed)
        for p in hand_model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        clip_grad_norm_(list(hand_model.parameters()), 0.5)
        hand.step()
    # Lion moves by the sign of an interpolation of momentum and gradient: clipping shows in the momentum. The
    # norms are summed in another order than clip_grad_norm_'s, hence a rounding-level tolerance.
    assert_same(ours_model, ours, hand_model, hand, exact=False)


def test_kwargs_reach_the_constructor():
    optimizer = configured(small_model(), "ADAMW", "SOLVER.OPTIMIZER.KWARGS.amsgrad", True)
    assert all(group["amsgrad"] for group in optimizer.param_groups)


@pytest.mark.parametrize("path, message", [
    ("nosuchpackage.Optimizer", r"SOLVER\.OPTIMIZER\.TYPE = 'nosuchpackage\.Optimizer': cannot import nosuchpackage"),
    ("torch.nn.Linear", r"'torch\.nn\.Linear' is not a torch\.optim\.Optimizer class"),
    ("schedulefree.NoSuchClass", r"schedulefree has nothing named 'NoSuchClass'"),
])
def test_a_path_that_names_no_optimizer_class_is_one_config_error(path, message):
    with pytest.raises(ConfigError, match=message):
        configured(small_model(), path)


def test_an_unknown_kwarg_is_refused_with_the_accepted_names():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZER\.KWARGS\.warmup: AdamWScheduleFree takes no argument "
                                          r"'warmup'; it takes .*warmup_steps"):
        configured(small_model(), "schedulefree.AdamWScheduleFree", "SOLVER.OPTIMIZER.KWARGS.warmup", 3)


@pytest.mark.parametrize("name", ["lr", "weight_decay", "betas", "fused"])
def test_a_kwarg_that_a_config_key_sets_is_refused(name):
    with pytest.raises(ConfigError, match=rf"SOLVER\.OPTIMIZER\.KWARGS\.{name} is set by the config's own keys"):
        configured(small_model(), "ADAMW", f"SOLVER.OPTIMIZER.KWARGS.{name}", 0.1)



def test_a_refused_value_is_a_config_error_and_a_bug_keeps_its_traceback():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZER\.TYPE = PickySGD cannot optimize this model: PickySGD "
                                          r"needs a momentum of 0\.5"):
        configured(small_model(), "tests.user_builders:PickySGD")
    with pytest.raises(TypeError, match="has no len"):
        configured(small_model(), "tests.user_builders:BuggySGD")
