"""From a config to a finished run: build data, model, solver, hooks and trainer; train or evaluate.

This is what `tools/train_net.py` and `tools/test_net.py` call. `build_run` is a sequence of named steps; the
config is validated once, frozen, and everything that can be wrong in it is checked before the output folder is
touched.
"""
import logging
import os
import random
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from pet.config import ConfigError, ignored_keys, validate_cfg
from pet.data import build_dataset, build_train_loader, build_val_loader
from pet.data.build import data_warnings
from pet.data.sampler import ResumableBatchSampler
from pet.engine.distributed.fsdp import device_mesh, is_sharded, rank_0_buffers, shard_model
from pet.engine.distributed.preemption import StopSignals
from pet.engine.distributed.process_group import (get_rank, get_world_size, init_distributed, is_collective_failure,
                                                  is_main_process)
from pet.engine.evaluation.confusion_report import ConfusionReport
from pet.engine.evaluation.schedule_free_weights import averaged_weights
from pet.engine.evaluation.tasks import CLASSIFICATION, Task, check_num_classes, class_names, task_of
from pet.engine.loop.early_stop import early_stopping
from pet.engine.loop.hooks import (BestCheckpointer, EMAHook, EvalHook, GradNormHook, IterationTimer, LRSchedulerHook,
                                   PeriodicCheckpointer, PeriodicWriter, SharedBuffersHook)
from pet.engine.loop.trainer import Trainer
from pet.engine.loop.trackers import build_trackers, check_trackers, written_outputs
from pet.engine.loop.writers import ConsoleWriter, JSONWriter
from pet.engine.persistence.checkpointer import (Checkpointer, OptimizerState, StateDictGroup, checkpoint_classes,
                                                 checkpoint_weights, read_checkpoint_metadata)
from pet.engine.persistence.output_dir import FolderLock, claim_output_dir, write_config
from pet.engine.persistence.pretrained import load_pretrained
from pet.engine.persistence.resume_report import flatten, report_resume, saved_config
from pet.engine.persistence.safe_files import safe_output_path
from pet.engine.runs.allocator import keep_freed_memory
from pet.engine.runs.logs import attach_log_file, setup_logging
from pet.engine.runs.relaunch import Heartbeat, check_relaunch, record_failure
from pet.errors import CheckpointError, DistributedError, Preempted
from pet.models import build_model
from pet.models.norms import check_batch_statistics, check_norm_device
from pet.models.speed import apply_speed_knobs
from pet.solver.optimizers.ema import WeightEMA
from pet.solver.optimizers.schedule_free import training_mode
from pet.solver.units import SolverUnit, build_run_solver, check_unit_support, images_per_update

logger = logging.getLogger(__name__)

RUN_LOG_FILES = ("config.yaml", "log.txt", "metrics.json")  # what a run writes into OUTPUT_DIR besides checkpoints

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def shown_path(path: str) -> str:
    """`path` as a user would type it from here: relative below the working directory, absolute elsewhere."""
    relative = os.path.relpath(os.path.abspath(path))
    return os.path.abspath(path) if relative.startswith(os.pardir) else relative


def amp_dtype_for(name: str, device: torch.device) -> torch.dtype:
    """SOLVER.AMP.DTYPE on `device`: AUTO is bfloat16 on CPU (no GradScaler needed, and fast there) and float16
    elsewhere; float16 on CPU is taken with a warning."""
    if name == "AUTO":
        return torch.bfloat16 if device.type == "cpu" else torch.float16
    if name == "float16" and device.type == "cpu":
        logger.warning("SOLVER.AMP.DTYPE float16 on CPU: torch's CPU float16 kernels are many times slower than "
                       "float32 (bfloat16 is faster than both); use AUTO or bfloat16 unless you mean to")
    return AMP_DTYPES[name]


def prepare_config(cfg: Any) -> None:
    """Validate the config once and freeze it: nothing changes it during the run."""
    validate_cfg(cfg)
    cfg.freeze()


def report_ignored_keys(cfg: Any) -> None:
    """One warning per key that the rest of the config makes meaningless."""
    for key, value, why in ignored_keys(cfg):
        logger.warning("%s = %r is ignored: %s", key, value, why)


def seed_everything(seed: int) -> None:
    """Seed torch, Python and NumPy, so that a run is reproducible on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def count_updates_per_epoch(cfg: Any, dataset_size: int, world_size: int) -> int:
    """Optimizer updates in one pass over the training set; a batch larger than the data is a `ConfigError`."""
    try:
        return ResumableBatchSampler(dataset_size, cfg.TRAIN.BATCH_SIZE, cfg.SOLVER.ACCUMULATION.STEPS,
                                     world_size=world_size).updates_per_epoch
    except ValueError as e:
        raise ConfigError(f"TRAIN.BATCH_SIZE = {cfg.TRAIN.BATCH_SIZE} is too large for the training set: {e}") from None


@dataclass
class RunData:
    """The data of a run: its task, both splits, and the optimizer updates in one pass over the training set."""

    task: Task
    train_set: Dataset
    val_set: Dataset
    updates_per_epoch: int


@dataclass
class RunSolver:
    """The optimizers of a run, its length, its mixed precision, and its weight average."""

    units: List[SolverUnit]
    max_iter: int
    amp_dtype: Optional[torch.dtype]
    grad_scaler: torch.amp.GradScaler
    ema: Optional[EMAHook] = None


@dataclass
class RunSetup:
    """What a training run and the lr finder share: the processes, the data, the model and its solver."""

    rank: int
    world_size: int
    device: torch.device
    data: RunData
    model: torch.nn.Module  # unwrapped (sharded in place under FSDP)
    solver: RunSolver

    def step_model(self) -> torch.nn.Module:
        """The model the update step runs: DDP-wrapped with several processes, unless FSDP shards it."""
        if self.world_size == 1 or is_sharded(self.model):
            return self.model
        device = self.device
        return DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)

    def step_options(self, cfg: Any) -> Dict[str, Any]:
        """The update step's accumulation and mixed precision (the GradScaler of float16 only)."""
        scaler = self.solver.grad_scaler
        return {"accumulation": cfg.SOLVER.ACCUMULATION.STEPS, "amp_dtype": self.solver.amp_dtype,
                "grad_scaler": scaler if scaler.is_enabled() else None}


@dataclass
class Run:
    """Everything a training run is made of, built from a config by `build_run`."""

    model: torch.nn.Module  # the unwrapped model (DDP wraps it inside `trainer`)
    units: List[SolverUnit]  # the optimizers with their schedulers
    trainer: Trainer
    eval_hook: EvalHook
    start_iter: int
    max_iter: int
    output_dir: str
    lock: Optional[FolderLock] = None  # rank 0's claim on the output folder

    def train(self) -> Dict[str, float]:
        """Run the remaining iterations; return the final evaluation results."""
        signals = self.trainer.stop_signals = StopSignals()
        signals.install()
        training_mode([unit.optimizer for unit in self.units])  # schedule-free optimizers: the training weights
        try:
            if self.start_iter < self.max_iter:
                self.trainer.train(self.start_iter, self.max_iter)
            else:
                logger.info("The checkpoint is at iteration %d of %d: nothing left to train", self.start_iter,
                            self.max_iter)
        finally:
            signals.uninstall()
            if self.lock is not None:
                self.lock.release()
        if is_main_process():
            logger.info("Outputs in %s: checkpoints (model_final%s), %s, log.txt", shown_path(self.output_dir),
                        "/" if is_sharded(self.model) else ".pth", written_outputs(self.trainer.hooks))
        return self.eval_hook.results


def build_data(cfg: Any, world_size: int) -> RunData:
    """The task MODEL.NAME selects, both splits of its data set (checked against MODEL.NUM_CLASSES)."""
    task = task_of(cfg)
    train_set, val_set = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    check_num_classes(cfg, train_set, val_set)
    for warning in data_warnings(cfg, train_set):
        logger.warning(warning)
    return RunData(task, train_set, val_set, count_updates_per_epoch(cfg, len(train_set), world_size))


def build_solver(cfg: Any, model: torch.nn.Module, data: RunData, world_size: int,
                 device: torch.device) -> RunSolver:
    """The optimizers and schedulers, the run length, and the GradScaler of float16 mixed precision."""
    units, max_iter = build_run_solver(model, cfg, data.updates_per_epoch, world_size)
    amp = cfg.SOLVER.AMP
    amp_dtype = amp_dtype_for(amp.DTYPE, device) if amp.ENABLED else None
    check_unit_support(units, amp_dtype, world_size, is_sharded(model))
    ema = cfg.SOLVER.EMA
    ema_hook = EMAHook(WeightEMA(model, ema.DECAY, ema.WARMUP_ITERS), ema.UPDATE_PERIOD) if ema.ENABLED else None
    return RunSolver(units, max_iter, amp_dtype, torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
                     ema_hook)


def weights_for_use(cfg: Any, model: torch.nn.Module, data: RunData, solver: RunSolver, rank: int, world_size: int,
                    device: torch.device) -> Callable[[], ContextManager]:
    """The context in which the model holds the weights to evaluate and save: a schedule-free optimizer's average
    (BatchNorm statistics recomputed for it on classification data), else the trained weights themselves."""
    optimizers = [unit.optimizer for unit in solver.units]
    # The training stream from its first update, with its own generator: the same batches every time.
    loader = (lambda: build_train_loader(cfg, data.train_set, rank, world_size)) \
        if data.task.name == "classification" else None
    return lambda: averaged_weights(optimizers, model, loader, device)


def build_checkpointer(cfg: Any, model: torch.nn.Module, data: RunData, solver: RunSolver, world_size: int,
                       save_context: Callable[[], ContextManager]) -> Checkpointer:
    """The checkpointer of the run's state (the trainer's counters join once the trainer exists)."""
    units = solver.units
    extra = {"ema": solver.ema} if solver.ema is not None else {}
    return Checkpointer(cfg.OUTPUT_DIR, keep=cfg.TRAIN.CHECKPOINTS_TO_KEEP, enabled=is_main_process(),
                        metadata={"config": cfg.dump(), "world_size": world_size,
                                  "classes": class_names(data.train_set)},
                        save_context=save_context, sharded=is_sharded(model),
                        background=cfg.TRAIN.ASYNC_CHECKPOINT, model=model,
                        optimizers=StateDictGroup({u.name: OptimizerState(u.optimizer, u.configured_keys)
                                                   for u in units}),
                        schedulers=StateDictGroup({u.name: u.scheduler for u in units}), grad_scaler=solver.grad_scaler,
                        **extra)


def claim_output(cfg: Any, resume: bool) -> Optional[FolderLock]:
    """The run's first write: OUTPUT_DIR created and locked (rank 0); a new run moves an earlier one aside."""
    return claim_output_dir(cfg.OUTPUT_DIR, resume) if is_main_process() else None


def write_run_files(cfg: Any) -> None:
    """OUTPUT_DIR/config.yaml, and log.txt with the lines logged so far (rank 0)."""
    if is_main_process():
        write_config(cfg)
        attach_log_file(cfg.OUTPUT_DIR)


def restore(checkpointer: Checkpointer, cfg: Any, world_size: int) -> Dict[str, Any]:
    """The newest loadable checkpoint in OUTPUT_DIR, loaded (RNG states included), or {} when there is none."""
    checkpoint = checkpointer.load_newest()
    if checkpoint is None:
        logger.info("No checkpoint in %s: starting from scratch", cfg.OUTPUT_DIR)
        return {}
    report_resume(checkpoint, cfg, world_size)
    return checkpoint


def saved_data_position(checkpoint: Dict[str, Any], dataset_size: int, path: Optional[str]
                        ) -> Optional[Tuple[int, int]]:
    """Where a checkpoint's run would have taken its next batch (epoch, samples of its order taken), checked with
    the rest of its trainer state before anything is written; None for a fresh run."""
    if not checkpoint:
        return None
    state = checkpoint.get("trainer")
    try:
        Trainer.check_state(state)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path} does not fit this run (trainer): {e}") from None
    epoch, taken = state["data_position"]
    if not (epoch < 2 ** 31 and taken <= dataset_size):
        raise CheckpointError(f"checkpoint {path} holds the data position {[epoch, taken]}, beyond the training set's "
                              f"{dataset_size} samples")
    return epoch, taken


def build_trainer(cfg: Any, setup: RunSetup, start_iter: int, weights: Callable[[], ContextManager],
                  start_position: Optional[Tuple[int, int]] = None) -> Tuple[Trainer, EvalHook]:
    """The trainer (the data from `start_iter` on, at `start_position` when a checkpoint gives it) and its hooks,
    in the order they must run."""
    model, data, solver, device = setup.model, setup.data, setup.solver, setup.device
    pin = device.type == "cuda"  # page-locked batches: their copy to the GPU overlaps the update
    loader = build_train_loader(cfg, data.train_set, setup.rank, setup.world_size, start_iter, start_position, pin)
    val_loader = build_val_loader(cfg, data.val_set, setup.rank, setup.world_size, pin)
    trainer = Trainer(setup.step_model(), data.task.loss_fn, loader, solver.units, device,
                      max_consecutive_skips=cfg.TRAIN.MAX_CONSECUTIVE_SKIPS, **setup.step_options(cfg))
    def evaluate() -> Dict[str, float]:
        with weights():  # a schedule-free optimizer's average
            results = data.task.evaluate(model, val_loader, data.val_set, device)
            if solver.ema is not None:  # the average too, under val_ema/
                with solver.ema.ema.swapped_in():
                    averaged = data.task.evaluate(model, val_loader, data.val_set, device)
                results.update({name.replace("val/", "val_ema/", 1): value for name, value in averaged.items()})
        return results

    eval_hook = EvalHook(cfg.TRAIN.EVAL_PERIOD, evaluate)
    share = rank_0_buffers(model) if is_sharded(model) else None
    writers = [ConsoleWriter(solver.max_iter),
               JSONWriter(safe_output_path(cfg.OUTPUT_DIR, "metrics.json"), start_iter),
               *build_trackers(cfg, start_iter, solver.max_iter)] if is_main_process() else []  # TRAIN.LOGGERS
    trainer.register_hooks([
        IterationTimer(compile_warm_up=cfg.TRAIN.COMPILE),
        LRSchedulerHook(solver.units),
        SharedBuffersHook(share) if share is not None else None,
        GradNormHook(solver.units, cfg.TRAIN.WRITER_PERIOD) if any(u.computes_norm() for u in solver.units) else None,
        solver.ema,  # after the update, before it is evaluated or saved
        eval_hook,
        ConfusionReport(eval_hook, cfg.OUTPUT_DIR) if is_main_process() and data.task is CLASSIFICATION else None,
        PeriodicWriter(writers, cfg.TRAIN.WRITER_PERIOD, eval_hook),  # before the checkpoint: metrics are on disk
    ])
    return trainer, eval_hook


def build_setup(cfg: Any) -> RunSetup:
    """Validate the config, join the processes, and build the data, the model (MODEL.WEIGHTS loaded, sharded under
    FSDP) and its solver; nothing is written."""
    prepare_config(cfg)
    fsdp = cfg.DISTRIBUTED.STRATEGY.upper() == "FSDP"
    rank, world_size, device = init_distributed(cfg.DISTRIBUTED.TIMEOUT_S, always=fsdp)
    setup_logging()
    report_ignored_keys(cfg)
    if device.type == "cpu" and cfg.TRAIN.KEEP_FREED_MEMORY and not keep_freed_memory():
        logger.info("TRAIN.KEEP_FREED_MEMORY: this C library has no mallopt; memory is managed as usual")
    seed_everything(cfg.SEED)
    data = build_data(cfg, world_size)
    model = build_model(cfg).to(device)  # the same initial weights in every process
    if cfg.MODEL.WEIGHTS:
        load_pretrained(model, cfg.MODEL.WEIGHTS)
    check_batch_statistics(model, cfg.TRAIN.BATCH_SIZE)
    check_norm_device(cfg.MODEL.NORM, device.type)
    if fsdp:
        fsdp_cfg = cfg.DISTRIBUTED.FSDP
        shard_model(model, device_mesh(device, world_size), fsdp_cfg.RESHARD_AFTER_FORWARD, fsdp_cfg.PARAM_DTYPE)
    apply_speed_knobs(model, cfg.MODEL.CHANNELS_LAST, cfg.TRAIN.COMPILE_MODE if cfg.TRAIN.COMPILE else None)
    seed_everything(cfg.SEED + rank)  # each process draws its own augmentations and dropout masks
    return RunSetup(rank, world_size, device, data, model, build_solver(cfg, model, data, world_size, device))


def build_run(cfg: Any, resume: bool = False, extra_hooks: Tuple[Any, ...] = ()) -> Run:
    """Build data, model, solver, checkpointer, writers and hooks; with `resume`, load the latest checkpoint.
    `extra_hooks` (HookBase) run after the run's own, once its metrics are written (tools/tune.py's pruning)."""
    setup = build_setup(cfg)
    rank, world_size, device, data, model, solver = (setup.rank, setup.world_size, setup.device, setup.data,
                                                      setup.model, setup.solver)
    weights = weights_for_use(cfg, model, data, solver, rank, world_size, device)
    checkpointer = build_checkpointer(cfg, model, data, solver, world_size, weights)
    # Nothing above wrote a file: a bad config or data path has failed by now with the output folder untouched.
    check_trackers(cfg)  # a tracker of TRAIN.LOGGERS that is not installed, in every process
    lock = claim_output(cfg, resume)
    checkpoint = restore(checkpointer, cfg, world_size) if resume else {}
    # Every check a resume makes comes before the first write: a refused resume leaves the folder as it was.
    start_position = saved_data_position(checkpoint, len(data.train_set), checkpointer.loaded_path)
    for name in RUN_LOG_FILES:
        safe_output_path(cfg.OUTPUT_DIR, name)  # no link, folder or FIFO where the run writes
    check_relaunch(cfg.OUTPUT_DIR, checkpoint.get("iteration", 0))  # a crash loop stops here
    write_run_files(cfg)
    logger.info("Running with %d process(es) on %s; %d updates per epoch; %d images per update",
                world_size, device, data.updates_per_epoch, images_per_update(cfg, world_size))
    start_iter = checkpoint.get("iteration", 0)
    trainer, eval_hook = build_trainer(cfg, setup, start_iter, weights, start_position)
    if checkpoint:
        checkpointer.load_into("trainer", trainer, checkpoint, checkpointer.loaded_path)
    checkpointer.objects["trainer"] = trainer  # saved from now on; loaded above, once the trainer existed
    early_stop = early_stopping(cfg, eval_hook)  # TRAIN.EARLY_STOP; None when off
    if early_stop is not None:
        early_stop.resume(checkpoint, checkpointer.loaded_path)
        checkpointer.objects["early_stop"] = early_stop
    trainer.register_hooks([
        BestCheckpointer(checkpointer, cfg.TRAIN.BEST_METRIC, eval_hook, cfg.TRAIN.BEST_MODE)
        if cfg.TRAIN.BEST_METRIC else None,
        early_stop,  # before the PeriodicCheckpointer, which must see where it ends the run
        PeriodicCheckpointer(checkpointer, cfg.TRAIN.CHECKPOINT_PERIOD),
        Heartbeat(cfg.OUTPUT_DIR) if is_main_process() else None,
        *extra_hooks,
    ])
    return Run(model, solver.units, trainer, eval_hook, start_iter, solver.max_iter, cfg.OUTPUT_DIR, lock)


def train(cfg: Any, resume: bool = False, extra_hooks: Tuple[Any, ...] = ()) -> Dict[str, float]:
    """Train as the config says; with `resume`, continue from the latest checkpoint in OUTPUT_DIR; `extra_hooks`
    as in `build_run`.

    Returns the final evaluation results. A collective operation that fails (another process stalled past
    DISTRIBUTED.TIMEOUT_S, or died) is a `DistributedError` naming this process.
    """
    run = build_run(cfg, resume, extra_hooks)
    try:
        return run.train()
    except Preempted:
        raise  # a clean stop with a checkpoint, not a failure
    except Exception as e:
        failure = e
        if get_world_size() > 1 and isinstance(e, RuntimeError) and is_collective_failure(e):
            failure = DistributedError(f"process {get_rank()} of {get_world_size()}: a collective operation failed "
                                       f"(DISTRIBUTED.TIMEOUT_S = {cfg.DISTRIBUTED.TIMEOUT_S}): another process "
                                       f"stalled or died ({' '.join(str(e).split())[:200]})")
        record_failure(cfg.OUTPUT_DIR, run.trainer.iter, failure)  # for a relaunch to judge
        if failure is e:
            raise
        raise failure from None


def load_trained_model(cfg: Any, weights: str, ema: bool = False) -> Tuple[Task, torch.nn.Module, Dataset,
                                                                           torch.device]:
    """The task and the model of a checkpoint (or of a bare state dict), with the validation set, on this
    process's device."""
    prepare_config(cfg)
    _, _, device = init_distributed(cfg.DISTRIBUTED.TIMEOUT_S)
    setup_logging()
    task = task_of(cfg)
    val_set = build_dataset(cfg, "val")
    check_num_classes(cfg, val_set)
    model = build_model(cfg).to(device)
    load_weights(model, weights, ema, cfg)
    return task, model, val_set, device


def load_weights(model: torch.nn.Module, path: str, ema: bool = False, cfg: Any = None) -> None:
    """The model weights of a checkpoint of this project (a `.pth` file or an FSDP run's folder; with `ema`: its
    weight average), or of a plain state dict, into `model` (built from `cfg`); a file of another model, or no
    state dict at all, is a `CheckpointError` naming the path and, in one line, how the models differ."""
    state = checkpoint_weights(path, ema)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(another_model(model, state, path, cfg)) from None


# The keys that decide a model's parameter names and shapes, compared with the checkpoint's stored config when its
# weights do not fit: MODEL.NAME and MODEL.NUM_CLASSES are always named, the others only where they differ.
MODEL_KEYS = ("MODEL.NAME", "MODEL.NUM_CLASSES", "MODEL.SMALL_INPUT", "MODEL.NORM")


def another_model(model: torch.nn.Module, state: Dict[str, torch.Tensor], path: str, cfg: Any) -> str:
    """Why the weights `state` of `path` do not fit `model`, in one line of whole names: the model keys of the
    checkpoint's stored config against `cfg`'s where they differ, else how many tensors are missing, unexpected or
    of another shape, with the first few names (torch's own message has a line per key: thousands of characters
    for a model of another family)."""
    try:
        saved = saved_config(read_checkpoint_metadata(path).get("config"))
    except CheckpointError:
        saved = None  # the weights were read already: a metadata problem is no reason to hide the mismatch
    theirs = flatten(saved) if saved is not None else {}
    ours = flatten(saved_config(cfg.dump()) or {}) if cfg is not None else {}
    if theirs and ours and any(theirs.get(key) != ours.get(key) for key in MODEL_KEYS):
        shown = [key for key in MODEL_KEYS if key in MODEL_KEYS[:2] or theirs.get(key) != ours.get(key)]
        return (f"{path} holds a model trained with {', '.join(f'{k} = {theirs.get(k)!r}' for k in shown)}; the "
                f"config has {', '.join(f'{k} = {ours.get(k)!r}' for k in shown)}: give the config it was trained "
                "with (tools/test_net.py uses the one the checkpoint stores when --cfg is left out)")
    expected = model.state_dict()

    def first_names(keys: List[str]) -> str:
        return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [f"{key} {list(state[key].shape)} for {list(expected[key].shape)}" for key in expected
                if key in state and state[key].shape != expected[key].shape]
    parts = [f"{len(keys)} {what} ({first_names(keys)})" for keys, what in
             ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if keys]
    model_name = f"MODEL.NAME = {cfg.MODEL.NAME!r}" if cfg is not None else "the model"
    return f"{path} holds the weights of another model than {model_name}: {'; '.join(parts) or 'they do not load'}"


def evaluate(cfg: Any, weights: str, ema: bool = False) -> Dict[str, float]:
    """Evaluate the model weights of a checkpoint (with `ema`: its weight average) on the validation set."""
    task, model, val_set, device = load_trained_model(cfg, weights, ema)
    val_loader = build_val_loader(cfg, val_set, get_rank(), get_world_size())
    classes = checkpoint_classes(weights)
    if classes:
        logger.info("%s was trained on %d classes: %s", weights, len(classes), ", ".join(classes))
    results = task.evaluate(model, val_loader, val_set, device)
    logger.info("Evaluation of %s: %s", weights, ", ".join(f"{k} = {v:.4f}" for k, v in results.items()))
    return results
