"""FSDP2 sharding with the solver: 2 real processes (gloo), each holding a shard of every parameter.

The oracle is torch on the full tensors: the same model unsharded, the same gradients, torch's clipping functions
and the torch optimizer class with its for-loop kernels. After two updates the gathered parameters and optimizer
state must equal it, for every clip type and norm, on the fused path (AdamW), the foreach path (SGD) and LARS
(against itself unsharded: its trust ratio must see the full tensors). A non-finite gradient in one process's
shard must skip the update in both.
"""
import copy
import math

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import distribute_tensor

from pet.config import get_cfg
from pet.engine.distributed.fsdp import shard_blocks
from pet.solver import Optimizer
from pet.solver.optimizers.lars import LARS
from tests.engine.distributed_processes import run_in_processes
from tests.guard_of import guard_of

CLIPS = [("full_model", 2.0), ("full_model", 1.0), ("full_model", math.inf), ("norm", 2.0), ("norm", math.inf),
         ("value", 2.0), ("none", 2.0)]


def sharded_and_full(seed: int = 0):
    """A model with uneven shards (7 rows over 2 processes) and a 1-element bias (one process holds none of it),
    sharded, and an unsharded copy with the same weights."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 1))
    full = copy.deepcopy(model)
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    fully_shard(model[0], mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model, full


def give_gradients(model, full, seed: int, poison_rank: int = -1) -> None:
    """The same full gradients in both models (each process holds its shard); `poison_rank` puts a NaN into its
    own shard only."""
    generator = torch.Generator().manual_seed(seed)
    for p, q in zip(model.parameters(), full.parameters()):
        grad = torch.randn(q.shape, generator=generator) * 3
        q.grad = grad.clone()
        p.grad = distribute_tensor(grad, p.device_mesh, p.placements)
    if dist.get_rank() == poison_rank:
        next(model.parameters()).grad.to_local().view(-1)[0] = math.nan


def solver_cfg(opt_type: str, clip_type: str, norm_type: float):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", opt_type, "SOLVER.OPTIMIZER.BASE_LR", 0.1,
                         "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.01, "SOLVER.OPTIMIZER.BIAS_LR_FACTOR", 1.0,
                         "SOLVER.OPTIMIZER.WEIGHT_DECAY_BIAS", 0.01, "SOLVER.OPTIMIZER.WEIGHT_DECAY_NORM", 0.01,
                         "SOLVER.OPTIMIZER.LARS.EXCLUDE_NORM_AND_BIAS", False])
    if clip_type != "none":
        cfg.merge_from_list(["SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE", clip_type,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 1.0])
        if clip_type != "value":
            cfg.merge_from_list(["SOLVER.OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE", norm_type])
    return cfg


def reference_optimizer(opt_type: str, full: nn.Module) -> torch.optim.Optimizer:
    """torch's class with its for-loop kernels (LARS: ours, unsharded)."""
    params = list(full.parameters())
    if opt_type == "SGD":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01, foreach=False)
    if opt_type == "ADAMW":
        return torch.optim.AdamW(params, lr=0.1, weight_decay=0.01, foreach=False)
    return LARS(params, lr=0.1, momentum=0.9, weight_decay=0.01)


def clip_by_hand(full: nn.Module, clip_type: str, norm_type: float) -> None:
    params = list(full.parameters())
    if clip_type == "full_model":
        torch.nn.utils.clip_grad_norm_(params, 1.0, norm_type=norm_type)
    elif clip_type == "norm":
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], 1.0, norm_type=norm_type)
    elif clip_type == "value":
        torch.nn.utils.clip_grad_value_(params, 1.0)


def assert_same(model, full, optimizer, reference, what: str) -> None:
    for (name, p), q in zip(model.named_parameters(), full.parameters()):
        torch.testing.assert_close(p.full_tensor(), q.detach(), rtol=1e-5, atol=1e-6, msg=f"{what}: {name}")
        ours, theirs = optimizer.state[p], reference.state[q]
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            if key in theirs:
                torch.testing.assert_close(ours[key].full_tensor(), theirs[key], rtol=1e-5, atol=1e-6,
                                           msg=f"{what}: {name} {key}")


def clipping_matches_torch_on_full_tensors(rank: int, world_size: int) -> None:
    for opt_type in ("SGD", "ADAMW", "LARS"):
        for clip_type, norm_type in CLIPS:
            what = f"{opt_type} {clip_type} {norm_type}"
            model, full = sharded_and_full()
            optimizer = Optimizer(model, solver_cfg(opt_type, clip_type, norm_type).SOLVER.OPTIMIZER).build()
            assert bool(optimizer.defaults.get("fused")) == (opt_type == "ADAMW"), what  # fused where torch can
            reference = reference_optimizer(opt_type, full)
            for seed in (1, 2):
                give_gradients(model, full, seed)
                expected_norm = None
                if clip_type in ("full_model", "norm"):
                    expected_norm = torch.nn.utils.get_total_norm([q.grad for q in full.parameters()], norm_type)
                optimizer.step()
                clip_by_hand(full, clip_type, norm_type)
                reference.step()
                if expected_norm is not None:
                    torch.testing.assert_close(guard_of(optimizer).last_norm, expected_norm, msg=what)
            assert_same(model, full, optimizer, reference, what)


def a_non_finite_shard_skips_the_update_everywhere(rank: int, world_size: int) -> None:
    for opt_type, clip_type in (("SGD", "none"), ("SGD", "full_model"), ("ADAMW", "none"), ("ADAMW", "full_model")):
        model, full = sharded_and_full()
        optimizer = Optimizer(model, solver_cfg(opt_type, clip_type, 2.0).SOLVER.OPTIMIZER).build()
        reference = reference_optimizer(opt_type, full)
        give_gradients(model, full, seed=1)
        optimizer.step()
        clip_by_hand(full, clip_type, 2.0)
        reference.step()
        give_gradients(model, full, seed=2, poison_rank=1)  # only process 1 sees it
        optimizer.step()  # skipped on both: the reference takes no step
        assert guard_of(optimizer).num_skipped == 1, (rank, opt_type, clip_type)
        assert_same(model, full, optimizer, reference, f"{opt_type} {clip_type} after the skip")


@pytest.mark.slow  # real processes
def test_sharded_clipping_and_updates_equal_torch_on_the_full_tensors(tmp_path):
    run_in_processes(clipping_matches_torch_on_full_tensors, 2, tmp_path)


@pytest.mark.slow
def test_a_non_finite_gradient_in_one_shard_skips_the_update_in_every_process(tmp_path):
    run_in_processes(a_non_finite_shard_skips_the_update_everywhere, 2, tmp_path)


def muon_on_shards_is_refused(rank: int, world_size: int) -> None:
    from pet.config import ConfigError
    from pet.solver.units import build_solver_units

    model, _ = sharded_and_full()
    cfg = get_cfg()
    cfg.merge_from_other_cfg({"SOLVER": {"OPTIMIZER": {"TYPE": "ADAMW"}, "OPTIMIZERS": {
        "hidden": {"MIN_NDIM": 2, "OPTIMIZER": {"TYPE": "MUON"}}, "rest": {}}}})
    with pytest.raises(ConfigError, match=r"^SOLVER\.OPTIMIZERS\.hidden\.OPTIMIZER\.TYPE = Muon orthogonalises whole "
                                          r"matrices, and DISTRIBUTED\.STRATEGY FSDP shards them over the processes; "
                                          r"use DDP with Muon$"):
        build_solver_units(model, cfg.SOLVER)


@pytest.mark.slow
def test_muon_on_sharded_matrices_is_refused_in_one_line(tmp_path):
    run_in_processes(muon_on_shards_is_refused, 1, tmp_path)


@pytest.mark.parametrize("name, expected", [
    ("resnet18", ["backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4"]),
    ("vit_b_16", [f"backbone.encoder.layers.encoder_layer_{i}" for i in range(12)]),
    ("swin_t", [f"backbone.features.{i}" for i in range(8)]),
    ("fcos_resnet18_fpn", ["backbone.body.layer1", "backbone.body.layer2", "backbone.body.layer3",
                           "backbone.body.layer4", "backbone.fpn", "head"]),
])
def test_blocks_are_the_stages_of_each_family(name, expected):
    from pet.models import build_model

    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.NAME", name, "DATA.IMAGE_SIZE", 224])
    if name.startswith("fcos"):
        cfg.merge_from_list(["DATA.DATASET", "shapes", "MODEL.NUM_CLASSES", 4])
    model = build_model(cfg)
    names = {module: name for name, module in model.named_modules()}
    assert [names[block] for block in shard_blocks(model)] == expected
