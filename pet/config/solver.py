"""The SOLVER subtree of the config: optimizer, clipping and LR schedule defaults."""
from pet.config.node import CfgNode


def solver_defaults() -> CfgNode:
    """Return a fresh SOLVER node holding every SOLVER default."""
    solver = CfgNode()

    opt = solver.OPTIMIZER = CfgNode()
    # SGD, ADAMW, ADAM, RMSPROP, LARS or any torch.optim class name (case-insensitive).
    opt.TYPE = "SGD"
    opt.BASE_LR = 0.001
    opt.MOMENTUM = 0.9  # SGD / RMSprop / LARS
    opt.NESTEROV = False  # SGD
    opt.BETAS = (0.9, 0.999)  # Adam family
    opt.EPS = 1e-8  # Adam family, RMSprop, LARS
    opt.WEIGHT_DECAY = 1e-4
    opt.WEIGHT_DECAY_BIAS = 0.0  # parameters named `bias` outside norm layers
    opt.WEIGHT_DECAY_NORM = 0.0  # every parameter of a norm layer
    opt.WEIGHT_DECAY_EMBED = 0.0  # embeddings and position/class tokens
    opt.BIAS_LR_FACTOR = 1.0
    opt.BACKBONE_LR_FACTOR = 1.0
    opt.BACKBONE_PREFIX = "backbone"

    clip = opt.CLIP_GRADIENTS = CfgNode()
    clip.ENABLED = False
    clip.CLIP_TYPE = "full_model"  # full_model, norm, value
    clip.CLIP_VALUE = 1.0
    clip.NORM_TYPE = 2.0  # > 0, or inf

    lars = opt.LARS = CfgNode()
    # Layer-wise adaptive rate scaling (You et al. 2017): local lr = eta * |w| / (|g| + wd * |w| + eps).
    # OPTIMIZER.EPS guards the division; OPTIMIZER.MOMENTUM / NESTEROV apply as for SGD.
    lars.TRUST_COEFFICIENT = 0.001
    # Norm-layer parameters and biases keep the plain lr (no trust ratio), as in SimCLR/BYOL/MMSelfSup.
    lars.EXCLUDE_NORM_AND_BIAS = True


    nonfinite = opt.NONFINITE = CfgNode()
    # With clipping off, still measure the gradient norm and skip an update whose norm is inf or NaN (one read of
    # the gradients per step; with clipping on, clipping does this for free).
    nonfinite.CHECK_GRADIENTS = True

    kernels = opt.KERNELS = CfgNode()
    # AUTO: torch's fused kernels where it has them for the class and the parameters' device and dtype, else
    # foreach; FUSED, FOREACH or FOR_LOOP force one (an error where the class lacks it).
    kernels.IMPLEMENTATION = "AUTO"

    overrides = opt.OVERRIDES = CfgNode()
    # ((REGEX, LR_FACTOR, WEIGHT_DECAY or None), ...), applied after the rules above, in order, to every parameter
    # whose full dotted name matches REGEX entirely (re.fullmatch): lr *= LR_FACTOR; decay = WEIGHT_DECAY if set.
    overrides.RULES = ()

    layer_decay = opt.LAYER_DECAY = CfgNode()
    # Layer-wise lr decay for torchvision ViT / Swin backbones: lr *= RATE ** (L - layer), embeddings at layer 0,
    # the head at L. 1.0 turns it off.
    layer_decay.RATE = 1.0

    scaling = solver.LR_SCALING = CfgNode()
    # Fine-tuning factor (SpeeChain): every group's lr times FT_FACTOR, the schedule's shape untouched.
    scaling.FT_FACTOR = 1.0
    # Linear scaling rule: with REFERENCE_BATCH_SIZE > 0, BASE_LR is meant for that many images per update and is
    # multiplied by (real images per update) / REFERENCE_BATCH_SIZE.
    scaling.REFERENCE_BATCH_SIZE = 0
    # Also rescale iteration counts (TOTAL_ITERS, STEPS, WARM_UP_ITERS, NOAM and CHAIN) by the inverse ratio.
    scaling.SCALE_SCHEDULE = False

    # Named optimizers, each on its own modules and losses with its own step interval and schedule. Each entry
    # holds MODULES, LOSSES, STEP_INTERVAL and optional OPTIMIZER / SCHEDULER keys laid over the ones above.
    solver.OPTIMIZERS = CfgNode(new_allowed=True)

    accumulation = solver.ACCUMULATION = CfgNode()
    # Micro-batches per optimizer update. The schedule counts updates, not micro-batches.
    accumulation.STEPS = 1

    amp = solver.AMP = CfgNode()
    # Mixed precision: float16 uses a GradScaler (gradients unscaled before clipping), bfloat16 needs none.
    amp.ENABLED = False
    amp.DTYPE = "float16"  # float16, bfloat16

    sched = solver.SCHEDULER = CfgNode()
    sched.POLICY = "STEP"  # STEP, COSINE, STEP_COSINE, POLY, ONE_CYCLE, NOAM, CHAIN
    sched.TOTAL_ITERS = 40000
    sched.TOTAL_EPOCHS = None  # if set: total = TOTAL_EPOCHS * iter_per_epoch, and STEPS are in epochs
    sched.STEPS = (30000,)
    sched.GAMMA = 0.1
    sched.WARM_UP_ITERS = 500
    sched.WARM_UP_EPOCHS = None  # if set: warmup = round(WARM_UP_EPOCHS * iter_per_epoch)
    sched.WARM_UP_FACTOR = 0.1
    sched.WARM_UP_METHOD = "LINEAR"  # CONSTANT, LINEAR, EXP
    sched.LR_POW = 0.9
    sched.MIN_LR_FACTOR = 0.0
    sched.LOG_LR_CHANGE_THRESHOLD = 1.1

    one_cycle = sched.ONE_CYCLE = CfgNode()
    # Smith's one-cycle (torch OneCycleLR, cosine annealing): up from 1/DIV_FACTOR to 1 over PCT_START of the run,
    # then down to 1/(DIV_FACTOR * FINAL_DIV_FACTOR).
    one_cycle.PCT_START = 0.3
    one_cycle.DIV_FACTOR = 25.0
    one_cycle.FINAL_DIV_FACTOR = 1e4

    noam = sched.NOAM = CfgNode()
    # Noam (Vaswani et al., SpeeChain): min((k+1) / W, sqrt(W / (k+1))), peaking at 1 after WARMUP_ITERS updates.
    noam.WARMUP_ITERS = 4000

    chain = sched.CHAIN = CfgNode()
    # POLICY: CHAIN runs ((POLICY, BEGIN, END), ...) phases of CONSTANT, STEP, COSINE or POLY back to back (MMEngine's
    # list of schedulers): each phase starts from the factor the previous one ended at. Units as TOTAL_*.
    chain.PHASES = ()

    momentum = sched.MOMENTUM = CfgNode()
    # Momentum (SGD, RMSprop, LARS) or Adam's beta1: CONSTANT leaves it; COSINE goes from START to END along half a
    # cosine; CYCLIC moves against the lr: START - (START - END) * f(k) (START at lr 0, END at the peak).
    momentum.POLICY = "CONSTANT"
    momentum.START = 0.95
    momentum.END = 0.85

    weight_decay = sched.WEIGHT_DECAY = CfgNode()
    # CONSTANT, or COSINE: each group's decay times a factor going from 1 to END_FACTOR along half a cosine.
    weight_decay.POLICY = "CONSTANT"
    weight_decay.END_FACTOR = 1.0
    return solver
