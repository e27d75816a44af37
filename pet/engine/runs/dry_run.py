"""`tools/train_net.py --dry-run`: what a run of a config would do, without doing it and without writing anything.

The config is validated and the data, model and solver are built exactly as a run builds them; then the merged
config, the data set sizes, every optimizer's parameter groups and a summary of every schedule, how each update
is made (clipping, mixed precision, accumulation, EMA, speed knobs), and the warnings a run would give.
"""
from typing import Any, List

from pet.config import ignored_keys
from pet.data.build import data_warnings, image_size
from pet.engine.distributed.process_group import init_distributed
from pet.engine.runs.runner import build_data, prepare_config
from pet.models import build_model
from pet.solver.param_groups.report import format_param_groups
from pet.solver.units import SolverUnit, build_run_solver, format_routes, images_per_update


def schedule_summary(unit: SolverUnit, max_iter: int) -> str:
    """Length, warmup, milestones, and the lr of the largest group at the first, peak and last update."""
    scheduler, schedule = unit.scheduler, unit.scheduler.schedule
    lrs = [scheduler.reference_lr * schedule(k) for k in range(max_iter)]
    peak = max(range(max_iter), key=lrs.__getitem__)
    milestones = schedule.arguments.get("steps")
    parts = [f"{schedule.policy}, {schedule.total_iters} updates", f"warmup {schedule.warmup_iters}"
             + (f" ({schedule.warmup_method}, from x{schedule.warmup_factor:g})" if schedule.warmup_iters else ""),
             *([f"milestones {', '.join(str(m) for m in milestones)}"] if milestones else []),
             f"lr {lrs[0]:.6g} at update 0, peak {lrs[peak]:.6g} at {peak}, {lrs[-1]:.6g} at {max_iter - 1}"]
    return "; ".join(parts)


def update_lines(cfg: Any, units: List[SolverUnit]) -> List[str]:
    """One line each: clipping and the non-finite check (per optimizer), mixed precision, accumulation, EMA, and
    the speed knobs."""
    lines = []
    for unit in units:
        guard, name = unit.guard, unit.name or "the optimizer"
        if guard is None:
            lines.append(f"clipping: off for {name}; non-finite gradients are not checked")
        elif guard.clip_type != "none":
            norm = "" if guard.clip_type == "value" else f" of the {guard.norm_type:g}-norm"
            lines.append(f"clipping: {guard.clip_type}{norm} at {guard.clip_value:g} for {name}; non-finite "
                         "gradients skip the update")
        else:
            lines.append(f"clipping: off for {name}; non-finite gradients skip the update")
    amp, solver = cfg.SOLVER.AMP, cfg.SOLVER
    lines.append(f"mixed precision: {amp.DTYPE} autocast (AUTO: bfloat16 on CPU, float16 with a GradScaler on GPU)"
                 if amp.ENABLED else "mixed precision: off (float32)")
    steps = solver.ACCUMULATION.STEPS
    lines.append(f"accumulation: {steps} micro-batches of {cfg.TRAIN.BATCH_SIZE} per update" if steps > 1
                 else f"accumulation: off (one batch of {cfg.TRAIN.BATCH_SIZE} per update)")
    ema = solver.EMA
    lines.append(f"weight EMA: decay {ema.DECAY:g}, warmup {ema.WARMUP_ITERS} updates, every {ema.UPDATE_PERIOD}"
                 if ema.ENABLED else "weight EMA: off")
    knobs = [name for name, on in (("channels_last", cfg.MODEL.CHANNELS_LAST),
                                   (f"torch.compile ({cfg.TRAIN.COMPILE_MODE})", cfg.TRAIN.COMPILE)) if on]
    side = image_size(cfg)
    lines.append(f"speed knobs: {', '.join(knobs) if knobs else 'none (eager)'}; images of "
                 f"{f'{side}x{side}' if side else 'their own'} pixels")
    return lines


def warning_lines(cfg: Any, train_set: Any) -> List[str]:
    """What a run of the config would warn about at its start: ignored keys, the data."""
    lines = [f"{key} = {value!r} is ignored: {why}" for key, value, why in ignored_keys(cfg)]
    return lines + data_warnings(cfg, train_set)


def describe_run(cfg: Any) -> str:
    """The merged config, the data, the parameter groups and the schedules of a run of `cfg`, as text."""
    prepare_config(cfg)
    _, world_size, _ = init_distributed(cfg.DISTRIBUTED.TIMEOUT_S)
    data = build_data(cfg, world_size)
    units, max_iter = build_run_solver(build_model(cfg), cfg, data.updates_per_epoch, world_size)
    lines: List[str] = ["# The merged config", cfg.dump().rstrip(), "",
                        f"# Data: {cfg.DATA.DATASET}, {len(data.train_set)} training and {len(data.val_set)} "
                        f"validation samples; {data.updates_per_epoch} updates per epoch of "
                        f"{images_per_update(cfg, world_size)} images ({world_size} process(es))", ""]
    if cfg.SOLVER.OPTIMIZERS:
        lines += ["# Routes of the parameters (SOLVER.OPTIMIZERS)", format_routes(units), ""]
    for unit in units:
        name = f"SOLVER.OPTIMIZERS.{unit.name}" if unit.name else "SOLVER"
        lines += [f"# {name}: {type(unit.optimizer).__name__}", format_param_groups(unit.optimizer),
                  f"schedule: {schedule_summary(unit, max_iter)}", ""]
    lines += ["# Each update", *update_lines(cfg, units), ""]
    warnings = warning_lines(cfg, data.train_set)
    lines += ["# Warnings (a run logs them too)", *(warnings or ["none"]), ""]
    lines.append(f"# The run: {max_iter} updates; nothing was written (--dry-run)")
    return "\n".join(lines)
