"""Parameter-group rules on a model with a backbone, norms, embeddings, biases, a frozen and a shared module, and on
torchvision's and timm's real parameter names."""
import pytest
import torch
from torch import nn

from pet.config import ConfigError, get_cfg
from pet.solver import Optimizer
from pet.solver.optimizers.builder import group_rules
from pet.solver.param_groups.rules import (ParamEntry, build_param_groups, group_name, merge_param_groups,
                                           param_kind)
from tests.toy_model import fill_grads, toy_model

# Names of every parameter of ToyModel that the optimizer must hold (frozen ones and the tied weight excluded).
TRAINABLE = [
    "cls_token", "backbone.pos_embed", "backbone.conv.weight", "backbone.conv.bias", "backbone.bn.weight",
    "backbone.bn.bias", "backbone.embed.weight", "backbone.ln.weight", "backbone.ln.bias", "head.fc.weight",
    "head.fc.bias", "head.gn.weight", "head.gn.bias", "decoder.bias",
]

# Hand-computed from the rules with BASE_LR 0.1, BACKBONE_LR_FACTOR 0.5, BIAS_LR_FACTOR 2, WEIGHT_DECAY 1e-4,
# WEIGHT_DECAY_BIAS 1e-5, WEIGHT_DECAY_NORM 0, WEIGHT_DECAY_EMBED 2e-5: (name, lr, weight decay, members).
EXPECTED_GROUPS = [
    ("embed", 0.1, 2e-5, ["cls_token"]),
    ("backbone.embed", 0.05, 2e-5, ["backbone.pos_embed", "backbone.embed.weight"]),
    ("backbone.weight", 0.05, 1e-4, ["backbone.conv.weight"]),
    ("backbone.bias", 0.1, 1e-5, ["backbone.conv.bias"]),  # backbone factor AND bias factor: 0.1 * 0.5 * 2
    ("backbone.norm", 0.05, 0.0, ["backbone.bn.weight", "backbone.bn.bias", "backbone.ln.weight",
                                   "backbone.ln.bias"]),  # norm biases take no bias factor
    ("weight", 0.1, 1e-4, ["head.fc.weight"]),
    ("bias", 0.2, 1e-5, ["head.fc.bias", "decoder.bias"]),
    ("norm", 0.1, 0.0, ["head.gn.weight", "head.gn.bias"]),
]

OPTIMIZER_TYPES = ["SGD", "ADAMW", "ADAM", "RMSPROP", "LARS", "adagrad", "NAdam", "RAdam", "Adamax", "ASGD",
                   "adadelta"]


def distinct_cfg(opt_type: str = "SGD"):
    cfg = get_cfg()
    cfg.merge_from_list([
        "SOLVER.OPTIMIZER.TYPE", opt_type, "SOLVER.OPTIMIZER.BASE_LR", 0.1,
        "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.5, "SOLVER.OPTIMIZER.BIAS_LR_FACTOR", 2.0,
        "SOLVER.OPTIMIZER.WEIGHT_DECAY", 1e-4, "SOLVER.OPTIMIZER.WEIGHT_DECAY_BIAS", 1e-5,
        "SOLVER.OPTIMIZER.WEIGHT_DECAY_NORM", 0.0, "SOLVER.OPTIMIZER.WEIGHT_DECAY_EMBED", 2e-5,
    ])
    return cfg


def summary(optimizer):
    return [(g["name"], g["lr"], g["weight_decay"], g["param_names"]) for g in optimizer.param_groups]


@pytest.mark.parametrize("opt_type", OPTIMIZER_TYPES)
def test_every_rule_for_every_optimizer_type(opt_type):
    model = toy_model()
    optimizer = Optimizer(model, distinct_cfg(opt_type).SOLVER.OPTIMIZER).build()
    got = summary(optimizer)
    assert [(n, members) for n, _, _, members in got] == [(n, members) for n, _, _, members in EXPECTED_GROUPS]
    for (_, lr, wd, _), (_, want_lr, want_wd, _) in zip(got, EXPECTED_GROUPS):
        assert lr == pytest.approx(want_lr, rel=1e-12) and wd == pytest.approx(want_wd, rel=1e-12)


@pytest.mark.parametrize("opt_type", OPTIMIZER_TYPES)
def test_optimizer_holds_each_trainable_tensor_once_and_steps(opt_type):
    model = toy_model()
    optimizer = Optimizer(model, distinct_cfg(opt_type).SOLVER.OPTIMIZER).build()
    held = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(held) == len({id(p) for p in held}) == len(TRAINABLE)
    assert sorted(n for g in optimizer.param_groups for n in g["param_names"]) == sorted(TRAINABLE)
    assert all(p is not model.backbone.frozen.weight and p is not model.backbone.frozen.bias for p in held)
    before = model.head.fc.weight.detach().clone()
    frozen_before = model.backbone.frozen.weight.detach().clone()
    fill_grads(model)
    optimizer.step()
    assert not torch.equal(model.head.fc.weight, before)
    assert torch.equal(model.backbone.frozen.weight, frozen_before)


def test_one_group_per_distinct_hyperparameter_set_with_defaults():
    model = toy_model()
    optimizer = Optimizer(model, get_cfg().SOLVER.OPTIMIZER).build()
    # Defaults: every factor 1, decay 1e-4 for plain weights and 0 for the rest: exactly two sets.
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
        ("embed+bias+norm", 0.001, 0.0),  # kinds in first-seen order
        ("weight", 0.001, 1e-4),
    ]
    assert [len(g["params"]) for g in optimizer.param_groups] == [12, 2]


def test_factors_multiply_for_backbone_biases():
    # Pet dropped the backbone factor of backbone biases: lr must be BASE_LR * backbone * bias factor.
    cfg = distinct_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.1, "SOLVER.OPTIMIZER.BIAS_LR_FACTOR", 3.0])
    groups = build_param_groups(toy_model(), group_rules(cfg.SOLVER.OPTIMIZER))
    by_member = {name: g["lr"] for g in groups for name, _ in g["params"]}
    assert by_member["backbone.conv.bias"] == pytest.approx(0.1 * 0.1 * 3.0)
    assert by_member["head.fc.bias"] == pytest.approx(0.1 * 3.0)
    assert by_member["backbone.conv.weight"] == pytest.approx(0.1 * 0.1)


def test_backbone_prefix_needs_a_dot_boundary():
    model = nn.Module()
    model.backbone = nn.Linear(2, 2, bias=False)
    model.backbone_head = nn.Linear(2, 2, bias=False)  # starts with "backbone" but is not under it
    cfg = get_cfg().SOLVER.OPTIMIZER
    cfg.BACKBONE_LR_FACTOR = 0.5
    groups = build_param_groups(model, group_rules(cfg))
    assert [(g["name"], g["lr"], [n for n, _ in g["params"]]) for g in groups] == [
        ("backbone.weight", 0.0005, ["backbone.weight"]),
        ("weight", 0.001, ["backbone_head.weight"]),
    ]


def test_custom_backbone_prefix():
    model = nn.Sequential()
    model.add_module("body", nn.Linear(2, 2, bias=False))
    cfg = get_cfg().SOLVER.OPTIMIZER
    cfg.BACKBONE_PREFIX, cfg.BACKBONE_LR_FACTOR = "body", 0.25
    (group,) = build_param_groups(model, group_rules(cfg))
    assert (group["name"], group["lr"]) == ("body.weight", 0.00025)


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(4), nn.BatchNorm3d(4), nn.SyncBatchNorm(4), nn.InstanceNorm1d(4, affine=True),
                                  nn.InstanceNorm2d(4, affine=True), nn.InstanceNorm3d(4, affine=True),
                                  nn.RMSNorm(4), nn.LazyBatchNorm2d()])
def test_every_norm_layer_type_is_a_norm(norm):
    assert all(param_kind(name, norm) == "norm" for name, _ in norm.named_parameters(recurse=False))


def test_norm_subclasses_count_as_norms():
    class MyNorm(nn.LayerNorm):
        pass

    assert param_kind("bias", MyNorm(4)) == "norm"


# timm's token / position names and torchvision's (ViT: class_token, encoder.pos_embedding).
@pytest.mark.parametrize("name", ["pos_embed", "cls_token", "dist_token", "reg_token", "absolute_pos_embed",
                                  "relative_position_bias_table", "position_embedding", "mask_token",
                                  "class_token", "pos_embedding"])
def test_embedding_parameter_names(name):
    assert param_kind(name, nn.Module()) == "embed"
    assert param_kind("weight", nn.Embedding(3, 2)) == "embed"
    assert param_kind("class_token_x", nn.Module()) == "weight"


@pytest.mark.parametrize("name", ["bias", "in_proj_bias", "q_bias", "v_bias"])
def test_a_parameter_whose_own_name_ends_in_bias_is_a_bias(name):
    assert param_kind(name, nn.Module()) == "bias"
    assert param_kind("bias_table", nn.Module()) == "weight"


def test_torchvision_vit_tokens_are_embeddings_and_attention_biases_are_biases():
    from torchvision.models import VisionTransformer

    model = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8,
                              num_classes=3)
    groups = by_name(build_param_groups(model, group_rules(distinct_cfg().SOLVER.OPTIMIZER)))
    # (lr, weight decay) from the rules: embeddings 2e-5; biases lr x BIAS_LR_FACTOR 2 and decay 1e-5.
    assert groups["class_token"][:2] == (0.1, 2e-5)
    assert groups["encoder.pos_embedding"][:2] == (0.1, 2e-5)
    assert groups["encoder.layers.encoder_layer_0.self_attention.in_proj_bias"][:2] == (0.2, 1e-5)
    assert groups["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"][:2] == (0.1, 1e-4)
def test_group_names_name_the_scope_and_tag_only_when_shared():
    assert group_name([("backbone", "", "norm"), ("backbone", "", "bias")]) == "backbone.norm+bias"
    assert group_name([("backbone", "", "norm"), ("", "", "norm")]) == "norm"
    assert group_name([("", "", "weight")]) == "weight"
    assert group_name([("backbone", "layer3", "weight"), ("backbone", "layer3", "bias")]) == "backbone.layer3.weight+bias"
    assert group_name([("", "override2", "weight"), ("", "override1", "weight")]) == "weight"


def test_a_model_without_trainable_parameters_is_refused():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_param_groups(model, group_rules(get_cfg().SOLVER.OPTIMIZER))


class CountedValue(float):
    """A hyperparameter value that counts how often the merge hashes or compares it."""

    calls = 0

    def __hash__(self):
        CountedValue.calls += 1
        return float.__hash__(self)

    def __eq__(self, other):
        CountedValue.calls += 1
        return float.__eq__(self, other)


def merge_work(groups: int) -> int:
    """Hash and equality calls of merging 2 x `groups` entries that form `groups` distinct groups."""
    entries = [ParamEntry(f"p{i}", nn.Parameter(torch.zeros(1)), {"lr": CountedValue(i % groups)},
                          ("", "", "weight")) for i in range(2 * groups)]
    CountedValue.calls = 0
    merged = merge_param_groups(entries)
    assert len(merged) == groups
    return CountedValue.calls


def test_merging_is_linear_in_the_number_of_tensors_and_groups():
    # Comparing each tensor with every group found so far would make twice the groups cost four times the work.
    assert merge_work(2000) <= 2.2 * merge_work(1000)


def override_cfg(rules, **extra):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.1, "SOLVER.OPTIMIZER.OVERRIDES.RULES", repr(rules)]
                        + [x for kv in extra.items() for x in kv])
    return cfg.SOLVER.OPTIMIZER


def by_name(groups):
    return {n: (g["lr"], g["weight_decay"], g["name"]) for g in groups for n, _ in g["params"]}


def test_overrides_apply_in_order_after_the_rules_and_stay_merged():
    rules = ((r"head\..*", 10.0, None), (r"head\.fc\.weight", 0.5, 0.0), (r"backbone\.conv\..*", 1.0, 0.5))
    groups = build_param_groups(toy_model(), group_rules(override_cfg(rules)))
    got = by_name(groups)
    assert got["head.fc.weight"][:2] == pytest.approx((0.1 * 10 * 0.5, 0.0))  # both rules, in order
    assert got["head.fc.bias"][:2] == pytest.approx((1.0, 0.0))  # lr x 10; None keeps the bias decay 0
    assert got["head.gn.weight"][:2] == pytest.approx((1.0, 0.0))
    assert got["backbone.conv.weight"][:2] == pytest.approx((0.1, 0.5))
    assert got["backbone.conv.bias"][:2] == pytest.approx((0.1, 0.5))  # the rule sets every matched decay
    assert got["decoder.bias"][:2] == pytest.approx((0.1, 0.0))  # untouched
    # head.fc.bias and head.gn.* share (1.0, 0.0); conv weight and bias share (0.1, 0.5); decoder.bias stays with
    # the other (0.1, 0.0) parameters: four distinct sets, four groups.
    assert len(groups) == len({(g["lr"], g["weight_decay"]) for g in groups}) == 4
    assert got["backbone.conv.weight"][2] == "backbone.override3.weight+bias"
    assert got["head.fc.weight"][2] == "override1,2.weight"


def test_overrides_match_the_whole_name_only():
    # `head` alone matches nothing: the regex is anchored at both ends, so `decode_head`-style surprises cannot occur.
    groups = build_param_groups(toy_model(), group_rules(override_cfg(((r"head", 10.0, None), (r"fc\.weight", 10.0, None)))))
    assert all(lr == pytest.approx(0.1) or name.startswith("backbone") for name, (lr, _, _) in by_name(groups).items())
    assert not any("override" in g["name"] for g in groups)


def test_overrides_from_yaml(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("SOLVER:\n  OPTIMIZER:\n    OVERRIDES:\n      RULES: [['head\\..*', 2.0, 0.01], ['cls_token', 0.0, null]]\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    got = by_name(build_param_groups(toy_model(), group_rules(cfg.SOLVER.OPTIMIZER)))
    assert got["head.fc.weight"][:2] == pytest.approx((0.002, 0.01))
    assert got["cls_token"][:2] == (0.0, 0.0)


def tiny_vit():
    from torchvision.models import VisionTransformer
    from pet.models.classification import split_backbone_and_head

    torch.manual_seed(0)
    return split_backbone_and_head(VisionTransformer(image_size=32, patch_size=16, num_layers=3, num_heads=2,
                                                     hidden_dim=16, mlp_dim=32, num_classes=5))


def tiny_swin():
    from torchvision.models import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[4, 4],
                           num_classes=5)


def layer_decay_cfg(rate):
    cfg = get_cfg().SOLVER.OPTIMIZER
    cfg.BASE_LR, cfg.LAYER_DECAY.RATE = 1.0, rate
    return cfg


def test_layer_decay_for_vit():
    got = by_name(build_param_groups(tiny_vit(), group_rules(layer_decay_cfg(0.5))))
    # 3 blocks: embeddings at layer 0, block i at i + 1, final norm and head at L = 4; lr = 0.5 ** (4 - layer).
    expected = {"backbone.class_token": 0.0625, "backbone.conv_proj.weight": 0.0625,
                "backbone.encoder.pos_embedding": 0.0625, "backbone.encoder.layers.encoder_layer_0.ln_1.weight": 0.125,
                "backbone.encoder.layers.encoder_layer_2.mlp.0.bias": 0.5, "backbone.encoder.ln.weight": 1.0,
                "head.head.weight": 1.0}
    assert {name: got[name][0] for name in expected} == pytest.approx(expected)
    assert got["backbone.encoder.layers.encoder_layer_1.self_attention.in_proj_weight"][2] == "backbone.layer2.weight"


def test_layer_decay_for_swin():
    got = by_name(build_param_groups(tiny_swin(), group_rules(layer_decay_cfg(0.5))))
    # depths (2, 2): patch embedding 0, stage-1 blocks 1 and 2, patch merging with block 2, stage-2 blocks 3 and 4,
    # final norm and head at L = 5.
    expected = {"features.0.0.weight": 0.5 ** 5, "features.1.0.norm1.weight": 0.5 ** 4,
                "features.1.1.mlp.0.weight": 0.5 ** 3, "features.2.reduction.weight": 0.5 ** 3,
                "features.3.0.attn.qkv.weight": 0.5 ** 2, "features.3.1.norm2.bias": 0.5, "norm.weight": 1.0,
                "head.bias": 1.0}
    assert {name: got[name][0] for name in expected} == pytest.approx(expected)


def test_layer_decay_on_other_models_is_a_config_error():
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZER\.LAYER_DECAY\.RATE = 0\.5: layer decay needs a "
                                          r"torchvision ViT"):
        Optimizer(toy_model(), layer_decay_cfg(0.5)).build()
