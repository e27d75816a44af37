"""Differential matrix: the solver's optimizer against torch as the oracle.

Each case runs `UPDATES` updates of the optimizer `Optimizer(model, cfg.SOLVER.OPTIMIZER).build()` returns and of a
reference a careful user writes by hand with torch alone, on two copies of a tiny model fed the same gradients, and
compares after every update the parameters and, tensor by tensor, the optimizer state of each parameter.

The reference never calls the solver: it is the torch class named by the case, constructed with one param group
per parameter whose lr and weight decay the test derives itself from the rules (norm layers: WEIGHT_DECAY_NORM;
`bias`: WEIGHT_DECAY_BIAS and lr x BIAS_LR_FACTOR; under `backbone.`: lr x BACKBONE_LR_FACTOR; else WEIGHT_DECAY),
with the constructor arguments of `REFERENCE_CLASSES` and torch's for-loop kernels. It clips with torch's own
functions (`clip_grad_norm_` over all gradients, a loop of per-tensor `clip_grad_norm_`, `clip_grad_value_`),
and an update with a non-finite gradient is simply not taken. LARS has no torch class: its reference is the
formula of pet/solver/lars.py written per tensor in plain Python.

Axes (combined so that every value of each axis and the important interactions occur, not as a full product):
- TYPE: every class `optimizer_types()` accepts, SGD with momentum 0, 0.9 and Nesterov, LARS; the classes the
  solver cannot drive must be refused with a `ConfigError` at build time;
- KERNELS.IMPLEMENTATION: AUTO, FUSED, FOREACH, FOR_LOOP where the class has them;
- CLIP_GRADIENTS: off (the non-finite guard alone), full_model, norm, value; NORM_TYPE 1, 2, inf;
- parameter dtype: float32, float64, bfloat16, float16 (the reference in the same dtype; assert_close's
  tolerances, except that in bfloat16 / float16 an element may differ by 4 epsilons of its tensor's scale, as
  torch's own fused and for-loop kernels do);
- an inf or NaN in one gradient at update 1, at update 3, at updates 1 and 2, or never: those updates are skipped
  (parameters and state as if they never happened) and counted in the guard's `num_skipped`;
- a real `torch.amp.GradScaler("cpu")` loop: ours without `unscale_` (fused kernels get `grad_scale` /
  `found_inf`), the reference with `unscale_` then torch clipping, with and without an overflow on update 1.
"""
import math
import os
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import pytest
import torch
from torch import nn
from torch.nn.utils import clip_grad_norm_, clip_grad_value_

from pet.config import ConfigError, get_cfg
from pet.solver import Optimizer
from pet.solver.optimizers.types import optimizer_types
from tests.guard_of import guard_of

UPDATES = 4
# The device of the models, gradients and GradScaler: the CPU here; `PET_TEST_DEVICE=cuda` runs the same
# comparisons on a GPU's kernels (tools/gpu_check.sh does).
DEVICE = torch.device(os.environ.get("PET_TEST_DEVICE", "cpu"))
BASE_LR = 0.05
BACKBONE_LR_FACTOR = 0.5
BIAS_LR_FACTOR = 2.0
WEIGHT_DECAY = 1e-2
WEIGHT_DECAY_BIAS = 3e-3
WEIGHT_DECAY_NORM = 0.0
BETAS = (0.8, 0.99)
EPS = 1e-2  # large enough that a class not given it would be seen to differ
TRUST_COEFFICIENT = 0.02
CLIP_VALUE = 0.7
GRAD_GAIN = 5.0  # gradients ~ N(0, 5^2): every clip type really clips at CLIP_VALUE
NORM_LAYERS = (nn.BatchNorm1d, nn.LayerNorm)

# The torch class each config name stands for, and the constructor arguments a user gives it by hand from
# SOLVER.OPTIMIZER (MOMENTUM, NESTEROV, BETAS, EPS). lr and weight decay go in the param groups; every other
# argument keeps torch's default.
REFERENCE_CLASSES = {
    "SGD": (torch.optim.SGD, ("momentum", "nesterov")),
    "ADAM": (torch.optim.Adam, ("betas", "eps")),
    "ADAMW": (torch.optim.AdamW, ("betas", "eps")),
    "NADAM": (torch.optim.NAdam, ("betas", "eps")),
    "RADAM": (torch.optim.RAdam, ("betas", "eps")),
    "ADAMAX": (torch.optim.Adamax, ("betas", "eps")),
    "RMSPROP": (torch.optim.RMSprop, ("momentum", "eps")),
    "ADAGRAD": (torch.optim.Adagrad, ("eps",)),
    "ADADELTA": (torch.optim.Adadelta, ("eps",)),
    "ASGD": (torch.optim.ASGD, ()),
    "RPROP": (torch.optim.Rprop, ()),
    "ADAFACTOR": (torch.optim.Adafactor, ()),  # its eps is a pair (eps1, eps2): torch's default
    "MUON": (torch.optim.Muon, ("momentum", "nesterov")),  # its eps guards its orthogonalisation: its own
}
NO_WEIGHT_DECAY = {"RPROP"}  # the solver refuses a non-zero decay for these: the case sets every decay to 0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors are tiny: one thread spares OpenMP's start-up cost on every kernel (3x faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------------- models

class Part(nn.Module):
    def __init__(self, fc: nn.Linear, norm: Optional[nn.Module]) -> None:
        super().__init__()
        self.fc = fc
        self.norm = norm


class TinyModel(nn.Module):
    """backbone.fc (+bias), backbone.norm (BatchNorm1d), head.fc (+bias), head.norm (LayerNorm): 6 param groups."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Part(nn.Linear(5, 6), nn.BatchNorm1d(6))
        self.head = Part(nn.Linear(6, 3), nn.LayerNorm(3))

    def forward(self, x):
        x = torch.relu(self.backbone.norm(self.backbone.fc(x)))
        return self.head.norm(self.head.fc(x))


class MatrixModel(nn.Module):
    """Only 2-D weights (no bias, no norm layer), in two lr groups: what Muon can optimize."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Part(nn.Linear(5, 6, bias=False), None)
        self.head = Part(nn.Linear(6, 3, bias=False), None)


def make_model(kind="tiny", dtype=torch.float32):
    """The same model at every call, every parameter random (norm weights not all 1, biases not 0)."""
    torch.manual_seed(0)
    model = TinyModel() if kind == "tiny" else MatrixModel()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.3)
    return model.to(DEVICE, dtype)


def make_models(kind="tiny", dtype=torch.float32):
    """Two identical copies: ours and the reference's."""
    return make_model(kind, dtype), make_model(kind, dtype)


def gradients(model, update, dtype, bad_value=None):
    """Deterministic gradients of update `update` (1-based), by parameter name; `bad_value` put in one element."""
    generator = torch.Generator().manual_seed(1000 + update)
    grads = {name: (torch.randn(p.shape, generator=generator) * GRAD_GAIN).to(DEVICE, dtype)
             for name, p in model.named_parameters()}
    if bad_value is not None:
        grads["head.fc.weight"][0, 0] = bad_value
    return grads


def assign(model, grads):
    for name, p in model.named_parameters():
        p.grad = grads[name].clone()


# ------------------------------------------------------------------------------------------------------------ cases

@dataclass(frozen=True)
class Case:
    opt: str
    implementation: str = "AUTO"
    clip: Optional[str] = None  # None (off: the NONFINITE guard alone), full_model, norm, value
    norm_type: float = 2.0
    dtype: torch.dtype = torch.float32
    bad: Tuple[int, ...] = ()  # 1-based updates whose gradient holds a non-finite element
    bad_value: float = math.inf
    momentum: float = 0.9
    nesterov: bool = False
    model: str = "tiny"
    lars_exclude: bool = True

    @property
    def id(self):
        name = self.opt + ("-nesterov" if self.nesterov else f"-m{self.momentum:g}" if self.opt in (
            "SGD", "LARS") else "")
        clip = f"{self.clip}{self.norm_type:g}" if self.clip in ("full_model", "norm") else self.clip or "noclip"
        bad = f"bad{''.join(map(str, self.bad))}{'nan' if math.isnan(self.bad_value) else 'inf'}" if self.bad \
            else "finite"
        extra = "" if self.lars_exclude else "-noexclude"
        return f"{name}-{self.implementation}-{clip}-{str(self.dtype)[6:]}-{bad}{extra}"

    @property
    def weight_decays(self):
        """(weight, bias, norm) decays: all 0 for classes without weight decay."""
        if self.opt in NO_WEIGHT_DECAY:
            return 0.0, 0.0, 0.0
        return WEIGHT_DECAY, WEIGHT_DECAY_BIAS, WEIGHT_DECAY_NORM


def solver_cfg(case):
    weight, bias, norm = case.weight_decays
    cfg = get_cfg()
    cfg.merge_from_list([
        "SOLVER.OPTIMIZER.TYPE", case.opt, "SOLVER.OPTIMIZER.BASE_LR", BASE_LR,
        "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", BACKBONE_LR_FACTOR, "SOLVER.OPTIMIZER.BIAS_LR_FACTOR", BIAS_LR_FACTOR,
        "SOLVER.OPTIMIZER.WEIGHT_DECAY", weight, "SOLVER.OPTIMIZER.WEIGHT_DECAY_BIAS", bias,
        "SOLVER.OPTIMIZER.WEIGHT_DECAY_NORM", norm, "SOLVER.OPTIMIZER.MOMENTUM", case.momentum,
        "SOLVER.OPTIMIZER.NESTEROV", case.nesterov, "SOLVER.OPTIMIZER.BETAS", list(BETAS),
        "SOLVER.OPTIMIZER.EPS", EPS, "SOLVER.OPTIMIZER.KERNELS.IMPLEMENTATION", case.implementation,
        "SOLVER.OPTIMIZER.LARS.TRUST_COEFFICIENT", TRUST_COEFFICIENT,
        "SOLVER.OPTIMIZER.LARS.EXCLUDE_NORM_AND_BIAS", case.lars_exclude,
    ])
    if case.clip:
        cfg.merge_from_list(["SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE", case.clip,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", CLIP_VALUE,
                             "SOLVER.OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE", case.norm_type])
    return cfg.SOLVER.OPTIMIZER


# -------------------------------------------------------------------------------------------------------- reference

def hand_rules(model, case):
    """(name, parameter, kind, lr, weight decay) for every parameter, from the rules, without the solver."""
    weight_decay, bias_decay, norm_decay = case.weight_decays
    for module_name, module in model.named_modules():
        for local_name, p in module.named_parameters(recurse=False):
            name = f"{module_name}.{local_name}"
            kind = "norm" if isinstance(module, NORM_LAYERS) else "bias" if local_name == "bias" else "weight"
            lr = BASE_LR * (BACKBONE_LR_FACTOR if name.startswith("backbone.") else 1.0)
            lr *= BIAS_LR_FACTOR if kind == "bias" else 1.0
            decay = {"norm": norm_decay, "bias": bias_decay, "weight": weight_decay}[kind]
            yield name, p, kind, lr, decay


def torch_clip(params, clip, norm_type):
    """Clip true gradients with torch's own functions; return whether anything was above CLIP_VALUE."""
    if clip == "full_model":
        return clip_grad_norm_(params, CLIP_VALUE, norm_type=norm_type).item() > CLIP_VALUE
    if clip == "norm":
        return any([clip_grad_norm_([p], CLIP_VALUE, norm_type=norm_type).item() > CLIP_VALUE for p in params])
    largest = max(p.grad.abs().max().item() for p in params)
    clip_grad_value_(params, CLIP_VALUE)
    return largest > CLIP_VALUE


class HandLARS:
    """LARS per tensor, from the formula of pet/solver/lars.py: d = g + wd w, times the trust ratio
    eta |w| / (|g| + wd |w| + eps) (1 where |w| or |g| is 0; none for excluded norm / bias parameters); then
    momentum as torch SGD (first buf = d, later buf = m buf + d; Nesterov d + m buf) and w -= lr d."""

    def __init__(self, rules, case):
        self.rules = [(p, kind, lr, decay) for _, p, kind, lr, decay in rules]
        self.case = case
        self.state = {}

    @torch.no_grad()
    def step(self):
        case = self.case
        for p, kind, lr, wd in self.rules:
            if p.grad is None:
                continue
            g = p.grad
            d = g + wd * p
            if not (case.lars_exclude and kind in ("norm", "bias")):
                w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                if w_norm > 0 and g_norm > 0:
                    d = d * (TRUST_COEFFICIENT * w_norm / (g_norm + wd * w_norm + EPS))
            if case.momentum:
                state = self.state.setdefault(p, {})
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d.clone()
                else:
                    state["momentum_buffer"].mul_(case.momentum).add_(d)
                buf = state["momentum_buffer"]
                d = d + case.momentum * buf if case.nesterov else buf
            p.sub_(lr * d)

    def zero_grad(self):
        for p, *_ in self.rules:
            p.grad = None


def reference_optimizer(model, case):
    """The hand-built reference: torch class, per-parameter groups from the rules, for-loop kernels."""
    rules = list(hand_rules(model, case))
    if case.opt == "LARS":
        return HandLARS(rules, case)
    cls, arguments = REFERENCE_CLASSES[case.opt]
    groups = [{"params": [p], "lr": lr, **({} if case.opt in NO_WEIGHT_DECAY else {"weight_decay": decay})}
              for _, p, _, lr, decay in rules]
    values = {"momentum": case.momentum, "nesterov": case.nesterov, "betas": BETAS, "eps": EPS}
    kwargs = {name: values[name] for name in arguments}
    if case.opt != "MUON":  # Muon has a single implementation
        kwargs["foreach"] = False
    else:  # the config's defaults: SOLVER.OPTIMIZER.MUON.NS_STEPS 5, ADJUST_LR match_rms_adamw
        kwargs.update(ns_steps=5, adjust_lr_fn="match_rms_adamw")
    return cls(groups, **kwargs)


# ------------------------------------------------------------------------------------------------------- comparison

LOW_PRECISION = (torch.bfloat16, torch.float16)
# (rtol, atol) that torch.testing.assert_close uses by default for each floating dtype.
ASSERT_CLOSE_DEFAULTS = {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5),
                         torch.float64: (1e-7, 1e-7)}


def assert_close(actual, expected, msg):
    """`torch.testing.assert_close` with its defaults, except in bfloat16 / float16: there torch's own fused,
    foreach and for-loop kernels round differently (fused ones compute in float32), so any element may differ by
    up to 4 machine epsilons of the tensor's largest magnitude. (A plain `isclose` first: the same verdict, and
    much faster when it passes.)"""
    if not (torch.is_tensor(actual) and torch.is_tensor(expected) and expected.dtype in ASSERT_CLOSE_DEFAULTS):
        torch.testing.assert_close(actual, expected, msg=msg)
        return
    rtol, atol = ASSERT_CLOSE_DEFAULTS[expected.dtype]
    if expected.dtype in LOW_PRECISION:
        rtol, atol = 0.0, max(4 * torch.finfo(expected.dtype).eps * expected.detach().abs().max().item(), atol)
    if actual.dtype == expected.dtype and actual.shape == expected.shape and actual.device == expected.device \
            and torch.isclose(actual, expected, rtol=rtol, atol=atol).all():
        return
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=msg)


def assert_matches_reference(model, optimizer, reference_model, reference, stepped, when):
    """Parameters equal; every state tensor of each parameter equal. Before the reference has taken a real update
    our state may hold what torch's fused kernels create on a skipped step, but only as fresh (all-zero) state."""
    reference_params = dict(reference_model.named_parameters())
    for name, p in model.named_parameters():
        q = reference_params[name]
        assert_close(p.detach(), q.detach(), msg=lambda m: f"{when}, parameter {name}: {m}")
        ours, theirs = dict(optimizer.state.get(p, {})), dict(reference.state.get(q, {}))
        if stepped:
            assert set(ours) == set(theirs), f"{when}, state keys of {name}: ours {sorted(ours)}, torch " \
                                             f"{sorted(theirs)}"
        else:
            assert set(theirs) <= set(ours), f"{when}, state keys of {name}: ours {sorted(ours)}, torch " \
                                             f"{sorted(theirs)}"
            for key in set(ours) - set(theirs):
                value = ours[key]
                assert not torch.is_tensor(value) or torch.count_nonzero(value) == 0, \
                    f"{when}, {name}: state {key!r} left by a skipped update is not fresh state: {value}"
        for key in set(ours) & set(theirs):
            if ours[key] is None or theirs[key] is None:
                assert ours[key] is None and theirs[key] is None, f"{when}, {name}: state {key!r}"
                continue
            assert_close(ours[key], theirs[key], msg=lambda m: f"{when}, {name} state {key!r}: {m}")


def run_against_reference(case):
    model, reference_model = make_models(case.model, case.dtype)
    optimizer = Optimizer(model, solver_cfg(case)).build()
    if case.opt != "LARS":
        assert type(optimizer) is REFERENCE_CLASSES[case.opt][0]
    reference = reference_optimizer(reference_model, case)
    stepped, clipped = False, False
    for update in range(1, UPDATES + 1):
        bad = update in case.bad
        grads = gradients(model, update, case.dtype, case.bad_value if bad else None)
        assign(model, grads)
        optimizer.step()
        optimizer.zero_grad()
        if not bad:  # the reference simply does not take a bad update
            assign(reference_model, grads)
            if case.clip:
                clipped |= torch_clip(list(reference_model.parameters()), case.clip, case.norm_type)
            reference.step()
            stepped = True
        reference.zero_grad()
        assert_matches_reference(model, optimizer, reference_model, reference, stepped, f"after update {update}")
    assert guard_of(optimizer).num_skipped == len(case.bad)
    assert not case.clip or clipped, "the test's gradients never reached CLIP_VALUE"


# ------------------------------------------------------------------------------------------------------- the matrix

CLIPS = [("full_model", 1.0), ("full_model", 2.0), ("full_model", math.inf), ("norm", 1.0), ("norm", 2.0),
         ("norm", math.inf), ("value", 2.0)]
SGD_KINDS = [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, nesterov=True)]
FUSED_TYPES = ["ADAM", "ADAMW", "ADAGRAD"]  # and SGD: torch has fused CPU kernels for these
FOREACH_TYPES = ["RMSPROP", "NADAM", "RADAM", "ADAMAX", "ADADELTA", "ASGD", "RPROP", "ADAFACTOR"]
ALL_KERNELS = ["AUTO", "FUSED", "FOREACH", "FOR_LOOP"]


def type_and_kernel_cases():
    """Every accepted type with every implementation it has; no clipping, float32, finite gradients."""
    cases = [Case("SGD", kernel, **kind) for kind in SGD_KINDS for kernel in ALL_KERNELS]
    cases += [Case(opt, kernel) for opt in FUSED_TYPES for kernel in ALL_KERNELS]
    cases += [Case(opt, kernel) for opt in FOREACH_TYPES for kernel in ["AUTO", "FOR_LOOP"]]  # AUTO is foreach
    cases += [Case("RMSPROP", "FOREACH"), Case("ADAFACTOR", "FOREACH")]
    cases += [Case("MUON", model="matrix"), Case("MUON", model="matrix", nesterov=True)]
    cases += [Case("LARS", **kind) for kind in SGD_KINDS] + [Case("LARS", lars_exclude=False)]
    return cases


def clipping_cases():
    """Every clip type and norm type on the fused, foreach and for-loop paths; a rotation over the other types."""
    cases = [Case("SGD", "AUTO", clip, norm) for clip, norm in CLIPS]
    cases += [Case("ADAMW", "FOR_LOOP", clip, norm) for clip, norm in CLIPS]
    others = [Case("ADAM", "FOREACH"), Case("SGD", "FUSED", momentum=0.0), Case("SGD", "FOREACH", nesterov=True),
              Case("ADAMW", "FUSED"), Case("ADAGRAD", "FUSED"), Case("LARS"), Case("MUON", model="matrix")]
    others += [Case(opt) for opt in FOREACH_TYPES]
    for index, base in enumerate(others):
        for clip, norm in (CLIPS[(2 * index) % len(CLIPS)], CLIPS[(2 * index + 1) % len(CLIPS)]):
            cases.append(replace(base, clip=clip, norm_type=norm))
    return cases


def dtype_cases():
    """float64 / bfloat16 / float16 parameters: fused SGD and AdamW with each clip type, and other paths."""
    cases = []
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        for opt in ("SGD", "ADAMW"):
            cases += [Case(opt, "AUTO", clip, 2.0, dtype) for clip in (None, "full_model", "norm", "value")]
        cases += [Case("ADAM", "FOR_LOOP", "full_model", 2.0, dtype), Case("SGD", "FOREACH", "norm", math.inf, dtype),
                  Case("ADAGRAD", "FUSED", "value", 2.0, dtype), Case("RMSPROP", "AUTO", None, 2.0, dtype),
                  Case("LARS", "AUTO", "full_model", 1.0, dtype),
                  Case("ADAMW", "FUSED", "full_model", math.inf, dtype)]
    return cases


def nonfinite_cases():
    """inf / NaN at update 1, at update 3, at updates 1 and 2, on every path (the never case is everywhere else)."""
    patterns = [((1,), math.inf), ((3,), math.nan), ((1, 2), math.inf), ((1,), math.nan)]
    cases = []
    for bad, value in patterns:
        for base in (Case("SGD", "AUTO"), Case("SGD", "AUTO", "full_model"), Case("SGD", "FOR_LOOP"),
                     Case("ADAM", "AUTO"), Case("ADAMW", "FOREACH", "norm"), Case("LARS", clip="value")):
            cases.append(replace(base, bad=bad, bad_value=value))
    others = [Case("SGD", "FUSED", momentum=0.0), Case("SGD", "FUSED", "norm", nesterov=True),
              Case("SGD", "AUTO", "value"), Case("SGD", "AUTO", dtype=torch.bfloat16),
              Case("SGD", "FUSED", dtype=torch.float64), Case("ADAMW", "AUTO", "value", dtype=torch.float16),
              Case("ADAGRAD", "AUTO"), Case("ADAGRAD", "FOR_LOOP", "full_model"), Case("RMSPROP", "AUTO"),
              Case("MUON", model="matrix")] + [Case(opt) for opt in FOREACH_TYPES if opt != "RMSPROP"]
    for index, base in enumerate(others):
        bad, value = patterns[index % 3]
        cases.append(replace(base, bad=bad, bad_value=value))
    cases.append(Case("SGD", "FUSED", "norm", nesterov=True, bad=(1,)))  # forced fused kernels, first update bad
    return cases


MATRIX = type_and_kernel_cases() + clipping_cases() + dtype_cases() + nonfinite_cases()


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in MATRIX])
def test_updates_and_state_equal_torch(case):
    run_against_reference(case)


# --------------------------------------------------------------------------------------------------------- refusals

REFUSALS = [
    pytest.param("MUON", "tiny", (), id="MUON-non-2d-params"),
    pytest.param("SPARSEADAM", "tiny", (), id="SPARSEADAM"),
    pytest.param("SPARSEADAM", "tiny", ("SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.0), id="SPARSEADAM-no-decay"),
    pytest.param("RPROP", "tiny", (), id="RPROP-with-decay"),
]


@pytest.mark.parametrize("opt, model_kind, overrides", REFUSALS)
def test_types_the_solver_cannot_drive_are_refused_at_build_time(opt, model_kind, overrides):
    model = make_model(model_kind)
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", opt, *overrides])
    with pytest.raises(ConfigError) as refusal:
        Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    assert "\n" not in str(refusal.value) and "SOLVER.OPTIMIZER" in str(refusal.value)


def test_the_matrix_covers_every_type_the_solver_accepts():
    stepped = {case.opt for case in MATRIX}
    refused = {param.values[0] for param in REFUSALS}
    assert set(optimizer_types()) <= stepped | refused


# ------------------------------------------------------------------------------------------------------ GradScaler

LOSS_GAIN = 20.0  # gradients well above CLIP_VALUE
OVERFLOW = 1e38  # times the loss on the overflowing update: the scaled gradients are inf


def batch(update):
    generator = torch.Generator().manual_seed(2000 + update)
    return (torch.randn(8, 5, generator=generator).to(DEVICE), torch.randn(8, 3, generator=generator).to(DEVICE))


def scaled_backward(model, scaler, update, overflow):
    x, y = batch(update)
    loss = ((model(x) - y) ** 2).mean() * LOSS_GAIN * (OVERFLOW if overflow else 1.0)
    scaler.scale(loss).backward()


@pytest.mark.parametrize("clip", [None, "full_model", "norm", "value"], ids=lambda c: c or "noclip")
@pytest.mark.parametrize("overflow_first", [False, True], ids=["finite", "overflow1"])
@pytest.mark.parametrize("opt", ["SGD", "ADAMW"])
def test_grad_scaler_loop_equals_torch_loop_with_unscale(opt, overflow_first, clip):
    case = Case(opt, "AUTO", clip, 2.0)
    model, reference_model = make_models()
    optimizer = Optimizer(model, solver_cfg(case)).build()
    assert all(group.get("fused") for group in optimizer.param_groups)  # GradScaler hands them its scale
    reference = reference_optimizer(reference_model, case)
    scaler, reference_scaler = torch.amp.GradScaler(DEVICE.type), torch.amp.GradScaler(DEVICE.type)
    stepped, clipped = False, False
    for update in range(1, UPDATES + 1):
        overflow = overflow_first and update == 1
        scaled_backward(model, scaler, update, overflow)  # ours: no unscale_
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()

        scaled_backward(reference_model, reference_scaler, update, overflow)
        reference_scaler.unscale_(reference)
        if clip and not overflow:
            true_norm = torch.nn.utils.get_total_norm([p.grad for p in reference_model.parameters()], 2.0)
            if clip != "value":  # the norm our clipping logs as grad_norm: of the true gradients, before clipping
                torch.testing.assert_close(guard_of(optimizer).last_norm, true_norm)
            clipped |= torch_clip(list(reference_model.parameters()), clip, 2.0)
        reference_scaler.step(reference)
        reference_scaler.update()
        reference.zero_grad()
        stepped |= not overflow
        assert_matches_reference(model, optimizer, reference_model, reference, stepped, f"after update {update}")
        assert scaler.get_scale() == reference_scaler.get_scale()
    assert (scaler.get_scale() < 65536.0) if overflow_first else (scaler.get_scale() == 65536.0)  # it overflowed
    assert not clip or clipped, "the test's gradients never reached CLIP_VALUE"
