"""The gradient guard: a non-finite gradient skips the update, a large finite one never does, on every kernel."""
import math

import pytest
import torch
from torch import nn

from pet.config import get_cfg
from pet.solver import Optimizer
from pet.solver.optimizers.clip import non_finite_flag
from tests.guard_of import guard_of


@pytest.mark.parametrize("implementation", ["AUTO", "FOR_LOOP"])  # fused kernels (device flag), the host check
@pytest.mark.parametrize("clip", ["none", "value"])  # norm-based clipping skips on its (overflowing) norm, as torch
def test_large_finite_gradients_are_not_skipped(implementation, clip):
    # 1e30 is finite, but its square is not: a 2-norm taken to answer "is anything non-finite" would skip this.
    model = nn.Linear(3, 2)
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.KERNELS.IMPLEMENTATION", implementation, "SOLVER.OPTIMIZER.MOMENTUM", 0.0,
                         "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.0])
    if clip != "none":
        cfg.merge_from_list(["SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE", clip,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 1e31])
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    before = model.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e30)
    optimizer.step()
    assert guard_of(optimizer).num_skipped == 0
    torch.testing.assert_close(model.weight, before - 0.001 * 1e30)  # lr 0.001 x the gradient, unclipped


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.complex64])
@pytest.mark.parametrize("bad", [None, math.inf, -math.inf, math.nan])
def test_the_non_finite_flag_is_exact(dtype, bad):
    grads = [torch.full((4, 3), 1e4 if dtype == torch.float16 else 1e30).to(dtype), torch.zeros(5, dtype=dtype)]
    if bad is not None:
        grads[1][2] = bad
    expected = [g.clone() for g in grads]
    flag = non_finite_flag(grads)
    assert flag.dtype == torch.float32 and flag.dim() == 0
    assert flag.item() == (0.0 if bad is None else 1.0)
    assert all(torch.equal(g, e) or bad is not None for g, e in zip(grads, expected))  # the values are unchanged


@pytest.mark.parametrize("bad", [None, math.nan])
def test_sparse_gradients_are_checked_too(bad):
    sparse = torch.sparse_coo_tensor([[0, 2]], [1.0, 2.0 if bad is None else bad], (4,))
    assert non_finite_flag([torch.ones(3), sparse]).item() == (0.0 if bad is None else 1.0)
