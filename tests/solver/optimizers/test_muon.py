"""Muon routed to the matrices and kernels, AdamW to the rest, from SOLVER.OPTIMIZERS: the runs' units step as
torch.optim.Muon (matrices) or timm.optim.Muon (convolution kernels) and torch.optim.AdamW built by hand on the
same parameter sets and groups, on parameters and optimizer state; the presets' routes are Moonlight's and timm's
rules; clipping and the non-finite guard span both optimizers."""
import itertools
import os

import pytest
import torch
from torch import nn

from pet.config import ConfigError, get_cfg
from pet.models import build_model
from pet.solver.units import build_solver_units
from tests.tools.conftest import ROOT

timm_optim = pytest.importorskip("timm.optim")

LR, DECAY = 0.01, 0.05


class Net(nn.Module):
    """A stem, hidden matrices or kernels, norms, biases and a head: what routing separates."""

    def __init__(self, conv: bool):
        super().__init__()
        torch.manual_seed(0)
        self.conv = conv
        self.stem = nn.Linear(6, 8)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1) if conv else nn.Linear(8, 8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 1, bias=False) if conv else nn.Linear(8, 8, bias=False))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        if self.conv:
            x = self.body(x[:, :, None, None].expand(-1, -1, 3, 3)).mean((2, 3))
        else:
            x = self.body(x)
        return self.head(self.norm(x))


def routed_cfg(*overrides):
    cfg = get_cfg()
    cfg.merge_from_other_cfg({"SOLVER": {
        "OPTIMIZER": {"TYPE": "ADAMW", "BASE_LR": LR, "WEIGHT_DECAY": DECAY},
        "SCHEDULER": {"POLICY": "CONSTANT", "WARM_UP_ITERS": 0, "TOTAL_ITERS": 10},
        "OPTIMIZERS": {"hidden": {"MODULES": ["body"], "MIN_NDIM": 2,
                                  "OPTIMIZER": {"TYPE": "MUON", "MOMENTUM": 0.9, "NESTEROV": True}},
                       "rest": {}}}})
    cfg.merge_from_list(list(overrides))
    return cfg


def hand_built(model, muon_class, adjust="match_rms_adamw"):
    """Muon over the body's weights, AdamW over the rest: no decay for norms and biases, as the rules say."""
    hidden = [model.body[0].weight, model.body[2].weight]
    decayed = [model.stem.weight, model.head.weight]
    undecayed = [model.stem.bias, model.body[0].bias, model.norm.weight, model.norm.bias, model.head.bias]
    extra = {"ns_coefficients": "original", "conv_mode": "flatten"} if muon_class is not torch.optim.Muon else {}
    muon = muon_class([{"params": hidden, "weight_decay": DECAY}], lr=LR, momentum=0.9, nesterov=True, ns_steps=5,
                      adjust_lr_fn=adjust, **extra)
    adamw = torch.optim.AdamW([{"params": decayed, "weight_decay": DECAY},
                               {"params": undecayed, "weight_decay": 0.0}], lr=LR, betas=(0.9, 0.999), eps=1e-8,
                              foreach=False)
    return [muon, adamw]


def gradients(model, seed):
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator)


@pytest.mark.parametrize("conv, muon_class", [(False, torch.optim.Muon), (True, timm_optim.Muon)],
                         ids=["matrices", "kernels"])
@pytest.mark.parametrize("adjust", ["match_rms_adamw", "original"])
def test_a_routed_model_steps_as_muon_and_adamw_built_by_hand(conv, muon_class, adjust):
    ours_model, hand_model = Net(conv), Net(conv)
    units = build_solver_units(ours_model, routed_cfg("SOLVER.OPTIMIZERS.hidden.OPTIMIZER.MUON.ADJUST_LR",
                                                      adjust).SOLVER)
    assert [type(unit.optimizer) for unit in units] == [muon_class, torch.optim.AdamW]
    hand = hand_built(hand_model, muon_class, adjust)
    for seed in range(4):
        gradients(ours_model, seed), gradients(hand_model, seed)
        for unit in units:
            unit.optimizer.step()
        for optimizer in hand:
            optimizer.step()
    for (name, p), q in zip(ours_model.named_parameters(), hand_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    for unit, optimizer in zip(units, hand):
        ours = [unit.optimizer.state[p] for p in unit.params()]
        theirs = [optimizer.state[p] for group in optimizer.param_groups for p in group["params"]]
        assert len(ours) == len(theirs)
    muon_ours = units[0].optimizer.state[ours_model.body[0].weight]["momentum_buffer"]
    muon_hand = hand[0].state[hand_model.body[0].weight]["momentum_buffer"]
    torch.testing.assert_close(muon_ours, muon_hand, rtol=1e-6, atol=1e-7)
    adam_ours = units[1].optimizer.state[ours_model.head.weight]
    adam_hand = hand[1].state[hand_model.head.weight]
    for key in ("exp_avg", "exp_avg_sq", "step"):
        torch.testing.assert_close(adam_ours[key], adam_hand[key])


def test_full_model_clipping_and_the_guard_span_both_optimizers():
    from torch.utils.data import DataLoader, TensorDataset

    from pet.data import ResumableBatchSampler
    from pet.engine import Trainer, classification_losses

    ours_model, hand_model = Net(False), Net(False)
    cfg = routed_cfg("SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True, "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 0.1)
    units = build_solver_units(ours_model, cfg.SOLVER)
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(32, 6, generator=generator), torch.randint(0, 3, (32,), generator=generator))
    Trainer(ours_model, classification_losses, DataLoader(data, batch_sampler=ResumableBatchSampler(32, 8, seed=2)),
            units, torch.device("cpu")).train(0, 3)
    hand = hand_built(hand_model, torch.optim.Muon)
    for images, labels in itertools.islice(DataLoader(data, batch_sampler=ResumableBatchSampler(32, 8, seed=2)), 3):
        nn.functional.cross_entropy(hand_model(images), labels).backward()
        torch.nn.utils.clip_grad_norm_(list(hand_model.parameters()), 0.1)  # one norm over both optimizers' tensors
        for optimizer in hand:
            optimizer.step()
            optimizer.zero_grad()
    for (name, p), q in zip(ours_model.named_parameters(), hand_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_a_non_finite_gradient_in_one_route_skips_both():
    model = Net(False)
    units = build_solver_units(model, routed_cfg().SOLVER)
    from pet.engine.loop.update_step import UpdateStep

    before = [p.detach().clone() for p in model.parameters()]

    def losses(net, batch):
        return {"loss": nn.functional.cross_entropy(net(batch[0]), batch[1])}  # finite

    model.head.bias.register_hook(lambda grad: torch.full_like(grad, float("inf")))  # the head (AdamW) only
    step = UpdateStep(model, losses, units, torch.device("cpu"))
    outcome = step(iter([(torch.randn(4, 6), torch.randint(0, 3, (4,)))]), 0)
    assert float(outcome.skipped) == 1.0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))  # Muon's matrices did not move


def test_the_resnet_preset_is_timms_rule_with_the_stem_and_head_left_out():
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "cfgs", "digits", "resnet18_muon.yaml"))
    model = build_model(cfg)
    units = build_solver_units(model, cfg.SOLVER)
    names = {id(p): name for name, p in model.named_parameters()}
    muon = {names[id(p)] for p in units[0].params()}
    # timm's Muon: every tensor of 2 dimensions or more (kernels flattened), its fallback list for the rest.
    fallback = ("backbone.conv1.", "head.")
    timm_rule = {name for name, p in model.named_parameters() if p.dim() >= 2 and not name.startswith(fallback)}
    assert muon == timm_rule and len(muon) == 19
    assert type(units[0].optimizer) is timm_optim.Muon  # kernels: timm's Muon


def test_the_vit_preset_is_moonlights_rule():
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "cfgs", "fake", "vit_b_16_muon.yaml"))
    model = build_model(cfg)
    units = build_solver_units(model, cfg.SOLVER)
    names = {id(p): name for name, p in model.named_parameters()}
    muon = {names[id(p)] for p in units[0].params()}
    # Moonlight: the 2-D matrices, but not the embeddings (patch embedding, class token, positions) or the head.
    embeddings = ("backbone.conv_proj.", "backbone.class_token", "backbone.encoder.pos_embedding", "head.")
    moonlight = {name for name, p in model.named_parameters() if p.dim() == 2 and not name.startswith(embeddings)}
    assert muon == moonlight and len(muon) == 48
    assert type(units[0].optimizer) is torch.optim.Muon  # matrices only: torch's own


def test_muon_on_vectors_or_sharded_parameters_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZERS\.hidden\.OPTIMIZER\.TYPE = Muon updates weight matrices "
                                          r"and convolution kernels only, and 1 trainable parameters are not \(e\.g\. "
                                          r"body\.0\.bias of shape \(8,\)\)"):
        build_solver_units(Net(False), routed_cfg("SOLVER.OPTIMIZERS.hidden.MIN_NDIM", 0).SOLVER)


def test_timms_muon_as_built_steps_a_matrix_as_torchs_muon():
    """A route of kernels and matrices sends both to timm's Muon: on a matrix it must be torch's."""
    from pet.solver.optimizers.builder import muon_kind
    from pet.solver.optimizers.types import optimizer_type

    torch.manual_seed(3)
    ours, theirs = nn.Parameter(torch.randn(6, 10)), nn.Parameter(torch.randn(6, 10))
    theirs.data.copy_(ours.data)
    kernel = nn.Parameter(torch.randn(4, 2, 3, 3))
    kind, kwargs = muon_kind(optimizer_type("MUON"), [{"params": [("m", ours), ("k", kernel)]}],
                             {"lr": LR, "momentum": 0.9, "nesterov": True, "ns_steps": 5,
                              "adjust_lr_fn": "match_rms_adamw", "weight_decay": DECAY}, "SOLVER.OPTIMIZER")
    timm_muon = kind.cls([ours, kernel], **kwargs)
    torch_muon = torch.optim.Muon([theirs], lr=LR, momentum=0.9, nesterov=True, ns_steps=5,
                                  adjust_lr_fn="match_rms_adamw", weight_decay=DECAY)
    for seed in range(3):
        grad = torch.randn(6, 10, generator=torch.Generator().manual_seed(seed))
        ours.grad, theirs.grad, kernel.grad = grad.clone(), grad.clone(), torch.ones_like(kernel)
        timm_muon.step(), torch_muon.step()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(timm_muon.state[ours]["momentum_buffer"], torch_muon.state[theirs]["momentum_buffer"])


def test_kernels_without_timm_are_one_line_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm.optim", None)  # as if timm were not installed
    with pytest.raises(ConfigError, match=r"^SOLVER\.OPTIMIZERS\.hidden\.OPTIMIZER\.TYPE = MUON on convolution "
                                          r"kernels needs timm's Muon: pip install 'pet-solver\[timm\]' \(timm\); "
                                          r"or route only 2-D matrices to it \(MAX_NDIM 2\)$"):
        build_solver_units(Net(True), routed_cfg().SOLVER)


@pytest.mark.parametrize("readme", ["README.md", "README_zh.md"])
def test_the_readmes_routing_examples_are_the_presets(readme):
    import re

    import yaml

    text = open(os.path.join(ROOT, readme), encoding="utf-8").read()
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)
              if "TYPE: MUON" in block]
    presets = [yaml.safe_load(open(os.path.join(ROOT, "cfgs", *path)))
               for path in (("digits", "resnet18_muon.yaml"), ("fake", "vit_b_16_muon.yaml"))]
    assert [block["SOLVER"]["OPTIMIZERS"] for block in blocks] == [p["SOLVER"]["OPTIMIZERS"] for p in presets]
    assert [block["SOLVER"]["OPTIMIZER"] for block in blocks] == [p["SOLVER"]["OPTIMIZER"] for p in presets]
