"""The SOLVER subtree of the config (SPEC §2): optimizer, clipping and LR schedule defaults."""
from pet.config.node import CfgNode


def solver_defaults() -> CfgNode:
    """Return a fresh SOLVER node holding every default of SPEC §2."""
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


    accumulation = solver.ACCUMULATION = CfgNode()
    # Micro-batches per optimizer update. The schedule counts updates, not micro-batches.
    accumulation.STEPS = 1

    amp = solver.AMP = CfgNode()
    # Mixed precision: float16 uses a GradScaler (gradients unscaled before clipping), bfloat16 needs none.
    amp.ENABLED = False
    amp.DTYPE = "float16"  # float16, bfloat16

    sched = solver.SCHEDULER = CfgNode()
    sched.POLICY = "STEP"  # STEP, COSINE, STEP_COSINE, POLY
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
    return solver
