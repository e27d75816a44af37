"""The SOLVER section of the config: every key's default, rule and meaning (the README's SOLVER table)."""
from typing import Any

from pet.config.rules import (AT_LEAST_ONE, BETAS, BOOL, FACTOR, FRACTION, MAX_ITERATIONS, NON_NEGATIVE,
                              OPEN_FRACTION, OVERRIDE_RULES, POSITIVE, POSITIVE_INT, PREFIX, STEPS, STRING, Rule,
                              int_at_least, is_int, is_number, one_of, optional)
from pet.config.schema import Key, OpenSection, Section
from pet.lr_policies import CHAIN_POLICIES, POLICIES

CLIP_TYPES = ("full_model", "norm", "value")
IMPLEMENTATIONS = ("AUTO", "FUSED", "FOREACH", "FOR_LOOP")
WARMUP_METHODS = ("CONSTANT", "LINEAR", "EXP")


def _is_phases(v: Any) -> bool:
    if not isinstance(v, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 3 and isinstance(p[0], str)
            and p[0].upper() in CHAIN_POLICIES and NON_NEGATIVE.check(p[1]) and POSITIVE.check(p[2]) and p[1] < p[2]
            for p in v):
        return False
    return all(a[2] <= b[1] for a, b in zip(v, v[1:]))


EPOCHS = Rule(lambda v: is_int(v) and 0 < v <= 10 ** 6, "an integer > 0 (at most 1e6)")
WARMUP_EPOCHS = Rule(lambda v: is_number(v) and 0 <= v <= 10 ** 6, "a number >= 0 (at most 1e6)")
PHASES = Rule(_is_phases, f"a list of (POLICY, BEGIN, END) with POLICY in {' | '.join(CHAIN_POLICIES)}, "
                          "0 <= BEGIN < END, in order, not overlapping")

OPTIMIZER: Section = {
    "TYPE": Key("SGD", STRING, "`SGD`, `ADAMW`, `ADAM`, `RMSPROP`, `LARS`, `MUON` (hidden matrices and convolution "
                               "kernels, see [Routing parameters to optimizers](#routing-parameters-to-optimizers)), "
                               "or any `torch.optim` class name (`NAdam`, `RAdam`, `Adagrad`, `Adafactor`, ...; not "
                               "`LBFGS`, `SparseAdam`), see [Optimizers](#optimizers)"),
    "BASE_LR": Key(0.001, POSITIVE, "base learning rate, > 0"),
    "MOMENTUM": Key(0.9, FRACTION, "momentum of SGD, RMSprop, LARS and Muon, in [0, 1)"),
    "NESTEROV": Key(False, BOOL, "Nesterov momentum (SGD, LARS, Muon); needs `MOMENTUM > 0`"),
    "BETAS": Key((0.9, 0.999), BETAS, "Adam family, two numbers in [0, 1)"),
    "EPS": Key(1e-8, POSITIVE, "the denominator term of the Adam family, RMSprop, Adagrad, Adadelta and LARS; > 0"),
    "WEIGHT_DECAY": Key(1e-4, NON_NEGATIVE, "decay of ordinary weights, >= 0"),
    "WEIGHT_DECAY_BIAS": Key(0.0, NON_NEGATIVE, "decay of biases (a name ending in `bias`) outside norm layers"),
    "WEIGHT_DECAY_NORM": Key(0.0, NON_NEGATIVE, "decay of every parameter of a norm layer"),
    "WEIGHT_DECAY_EMBED": Key(0.0, NON_NEGATIVE, "decay of embeddings and position/class tokens"),
    "BIAS_LR_FACTOR": Key(1.0, NON_NEGATIVE, "lr factor of biases outside norm layers, >= 0"),
    "BACKBONE_LR_FACTOR": Key(1.0, NON_NEGATIVE, "lr factor of parameters under the backbone module, >= 0"),
    "BACKBONE_PREFIX": Key("backbone", PREFIX, "module name that marks the backbone (matched as `PREFIX.` at the "
                                               "start of the full name)"),
    "CLIP_GRADIENTS": {
        "ENABLED": Key(False, BOOL, "turn gradient clipping on"),
        "CLIP_TYPE": Key("full_model", one_of(CLIP_TYPES), "`full_model` (one global norm), `norm` (each tensor), "
                                                           "`value` (each element)"),
        "CLIP_VALUE": Key(1.0, POSITIVE, "the largest norm or element magnitude, > 0"),
        "NORM_TYPE": Key(2.0, Rule(lambda v: is_number(v) and v > 0, "a number > 0, or inf"),
                         "p of the p-norm, > 0, or `inf`"),
    },
    "MUON": {
        "NS_STEPS": Key(5, int_at_least(1, high=20), "`MUON`: Newton-Schulz iterations that orthogonalise each update"),
        "ADJUST_LR": Key("match_rms_adamw", one_of(("match_rms_adamw", "original"), case_sensitive=True),
                         "`MUON`: `match_rms_adamw` scales each matrix's lr so that its update has AdamW's RMS (one "
                         "BASE_LR serves Muon and AdamW, as Moonlight does); `original`: Keller Jordan's "
                         "max(1, rows/columns)^0.5"),
    },
    "LARS": {
        "TRUST_COEFFICIENT": Key(0.001, POSITIVE, "LARS eta, > 0"),
        "EXCLUDE_NORM_AND_BIAS": Key(True, BOOL, "norm-layer parameters and biases skip the LARS trust ratio"),
    },
    "NONFINITE": {
        "CHECK_GRADIENTS": Key(True, BOOL, "with clipping off, still skip updates whose gradients hold an inf or "
                                           "NaN (one read of the gradients)"),
    },
    "KERNELS": {
        "IMPLEMENTATION": Key("AUTO", one_of(IMPLEMENTATIONS), "`AUTO` (fused where torch has it, else foreach), or "
                                                               "force `FUSED`, `FOREACH`, `FOR_LOOP`"),
    },
    "OVERRIDES": {
        "RULES": Key((), OVERRIDE_RULES, "`((REGEX, LR_FACTOR, WEIGHT_DECAY or None), ...)`, see "
                                         "[Parameter overrides](#parameter-overrides)"),
    },
    "LAYER_DECAY": {
        "RATE": Key(1.0, FACTOR, "layer-wise lr decay of ViT / Swin backbones, in (0, 1]; 1 is off"),
    },
    "KWARGS": OpenSection("further constructor arguments of the optimizer class (`{amsgrad: True}`, "
                          "`{warmup_steps: 100}`), each checked against its signature"),
}

SCHEDULER: Section = {
    "POLICY": Key("STEP", one_of(POLICIES), ", ".join(f"`{name}`" for name in POLICIES)),
    "TOTAL_ITERS": Key(40000, POSITIVE_INT, "run length M in optimizer updates, when `TOTAL_EPOCHS` is None"),
    "TOTAL_EPOCHS": Key(None, optional(EPOCHS), "if set (integer > 0): M = TOTAL_EPOCHS x iter_per_epoch, and "
                                                "`STEPS` and `CHAIN.PHASES` are in epochs"),
    "STEPS": Key((30000,), STEPS, "milestones of `STEP`, `STEP_COSINE` and `CHAIN`'s STEP phases, strictly "
                                  "increasing, each in (0, M)"),
    "GAMMA": Key(0.1, FACTOR, "decay at each milestone, in (0, 1]"),
    "WARM_UP_ITERS": Key(500, int_at_least(0, " (0 disables warmup)", high=MAX_ITERATIONS),
                         "warmup length W in updates, when `WARM_UP_EPOCHS` is None; 0 disables warmup; not used by "
                         "`ONE_CYCLE` and `NOAM`"),
    "WARM_UP_EPOCHS": Key(None, optional(WARMUP_EPOCHS), "if set: W = round(WARM_UP_EPOCHS x iter_per_epoch), "
                                                         "fractions allowed; works without `TOTAL_EPOCHS`"),
    "WARM_UP_FACTOR": Key(0.1, FACTOR, "F, the lr multiplier at the start of warmup, in (0, 1]"),
    "WARM_UP_METHOD": Key("LINEAR", one_of(WARMUP_METHODS), "`CONSTANT`, `LINEAR`, `EXP`"),
    "LR_POW": Key(0.9, POSITIVE, "power of `POLY`, > 0"),
    "MIN_LR_FACTOR": Key(0.0, FRACTION, "floor m of `COSINE`, `POLY`, `STEP_COSINE` as a fraction of each group's "
                                        "base lr, in [0, 1)"),
    "LOG_LR_CHANGE_THRESHOLD": Key(1.1, Rule(lambda v: is_number(v) and v >= 1, "a number >= 1"),
                                   "log \"Changing learning rate a -> b\" when the ratio of two successive lrs "
                                   "exceeds it, >= 1"),
    "ONE_CYCLE": {
        "PCT_START": Key(0.3, OPEN_FRACTION, "`ONE_CYCLE`: share of the run spent rising, in (0, 1)"),
        "DIV_FACTOR": Key(25.0, AT_LEAST_ONE, "`ONE_CYCLE`: the start lr is BASE_LR / DIV_FACTOR, >= 1"),
        "FINAL_DIV_FACTOR": Key(1e4, AT_LEAST_ONE, "`ONE_CYCLE`: the final lr is the start lr / FINAL_DIV_FACTOR, "
                                                   ">= 1"),
    },
    "NOAM": {
        "WARMUP_ITERS": Key(4000, POSITIVE_INT, "`NOAM`: iterations to the peak, > 0"),
    },
    "CHAIN": {
        "PHASES": Key((), PHASES, "`CHAIN`: `((POLICY, BEGIN, END), ...)` with POLICY in `CONSTANT`, `STEP`, "
                                  "`COSINE`, `POLY`; set exactly when POLICY is `CHAIN`"),
    },
    "MOMENTUM": {
        "POLICY": Key("CONSTANT", one_of(("CONSTANT", "COSINE", "CYCLIC")),
                      "`CONSTANT`, `COSINE` (START to END), `CYCLIC` (against the lr)"),
        "START": Key(0.95, FRACTION, "momentum (Adam: beta1) at the start, in [0, 1)"),
        "END": Key(0.85, FRACTION, "momentum (Adam: beta1) at the end (`CYCLIC`: at the lr's peak), in [0, 1)"),
    },
    "WEIGHT_DECAY": {
        "POLICY": Key("CONSTANT", one_of(("CONSTANT", "COSINE")),
                      "`CONSTANT`, or `COSINE`: each group's decay x a factor from 1 to END_FACTOR"),
        "END_FACTOR": Key(1.0, NON_NEGATIVE, "the factor at the end of the run, >= 0"),
    },
}

SOLVER: Section = {
    "OPTIMIZER": OPTIMIZER,
    "SCHEDULER": SCHEDULER,
    "LR_SCALING": {
        "FT_FACTOR": Key(1.0, POSITIVE, "every lr x FT_FACTOR, the schedule's shape untouched (fine-tuning), > 0"),
        "REFERENCE_BATCH_SIZE": Key(0, Rule(lambda v: is_int(v) and v >= 0, "an integer >= 0 (0: no scaling)"),
                                    "linear scaling rule: BASE_LR is for this many images per update; 0 is off"),
        "SCALE_SCHEDULE": Key(False, BOOL, "with the rule, also scale iteration counts by the inverse ratio"),
    },
    "OPTIMIZERS": OpenSection("named optimizers, see [Several optimizers](#several-optimizers)"),
    "ACCUMULATION": {
        "STEPS": Key(1, int_at_least(1), "micro-batches per optimizer update; the schedule counts updates"),
    },
    "EMA": {
        "ENABLED": Key(False, BOOL, "keep an exponential moving average of the weights (and batch-norm statistics) "
                                    "and evaluate it too, as `val_ema/...`"),
        "DECAY": Key(0.9998, FRACTION, "the average's decay d once the ramp is over, in [0, 1)"),
        "WARMUP_ITERS": Key(2000, int_at_least(0, " (0: no ramp)", high=MAX_ITERATIONS),
                            "the ramp: update n of the average uses DECAY x (1 - exp(-n / WARMUP_ITERS)); 0: DECAY "
                            "throughout"),
        "UPDATE_PERIOD": Key(1, int_at_least(1, high=MAX_ITERATIONS),
                             "optimizer updates between two updates of the average (skipped updates do not count)"),
    },
    "AMP": {
        "ENABLED": Key(False, BOOL, "mixed precision"),
        "DTYPE": Key("AUTO", one_of(("AUTO", "float16", "bfloat16"), case_sensitive=True),
                     "`AUTO` (bfloat16 on CPU, float16 on CUDA), `float16` (with a GradScaler) or `bfloat16`"),
    },
}
