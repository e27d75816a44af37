"""From a config to a finished run: build data, model, solver, hooks and trainer; train or evaluate.

This is what `tools/train_net.py` and `tools/test_net.py` call. Everything that can be wrong in the config is
checked before the output folder is touched.
"""
import logging
import logging.handlers
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from pet.config import ConfigError, validate_cfg
from pet.data import build_dataset, build_train_loader, build_val_loader
from pet.data.sampler import ResumableBatchSampler
from pet.engine.checkpoint import Checkpointer, StateDictGroup, atomic_write, read_checkpoint, safe_output_path
from pet.engine.distributed import get_rank, get_world_size, init_distributed, is_main_process
from pet.engine.hooks import EvalHook, IterationTimer, LRSchedulerHook, PeriodicCheckpointer, PeriodicWriter
from pet.engine.resume import report_resume
from pet.engine.tasks import Task, check_num_classes, task_of
from pet.engine.trainer import Trainer
from pet.engine.writers import ConsoleWriter, JSONWriter, TensorboardWriter
from pet.models import build_model
from pet.solver.units import SolverUnit, build_run_solver, images_per_update

logger = logging.getLogger(__name__)

LOG_FORMAT = "[%(asctime)s %(name)s] %(message)s"
AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def setup_logging() -> None:
    """INFO lines on stdout from rank 0, only warnings from other ranks; rank 0 also buffers them for log.txt."""
    root = logging.getLogger("pet")
    for handler in list(root.handlers):  # a second run in the same process replaces the first one's handlers
        handler.close()
        root.removeHandler(handler)
    root.propagate = False
    main = is_main_process()
    root.setLevel(logging.INFO if main else logging.WARNING)
    console = logging.StreamHandler(sys.stdout if main else sys.stderr)
    console.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(console)
    if main:
        # Lines logged before the output folder may be written to (the parameter-group report) wait here.
        root.addHandler(logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1))


def attach_log_file(output_dir: str) -> None:
    """Write the buffered lines and every later one to OUTPUT_DIR/log.txt."""
    root = logging.getLogger("pet")
    file_handler = logging.FileHandler(safe_output_path(output_dir, "log.txt"))
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    for handler in list(root.handlers):
        if isinstance(handler, logging.handlers.MemoryHandler):
            handler.setTarget(file_handler)
            handler.close()  # flushes into the file
            root.removeHandler(handler)
    root.addHandler(file_handler)


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


def make_output_dir(path: str) -> None:
    """Create OUTPUT_DIR (and its parents); a path that cannot be a writable folder is a `ConfigError`."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=path)  # a read-only file system refuses this even to root
        probe.close()
    except FileExistsError:
        raise ConfigError(f"OUTPUT_DIR = {path!r} is a file, not a folder") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"OUTPUT_DIR = {path!r} cannot be used as the output folder: {reason}") from None


def check_unit_support(units: List[SolverUnit], amp_dtype: Optional[torch.dtype], world_size: int) -> None:
    """Refuse the combinations of several optimizers that the trainer cannot run correctly."""
    if amp_dtype == torch.float16 and any(unit.step_interval > 1 for unit in units):
        raise ConfigError("SOLVER.OPTIMIZERS.*.STEP_INTERVAL > 1 cannot be combined with SOLVER.AMP.DTYPE float16 "
                          "(one GradScaler cannot unscale gradients summed under different scales); use bfloat16")
    if world_size > 1 and any(unit.losses for unit in units):
        raise ConfigError("SOLVER.OPTIMIZERS.*.LOSSES needs a single process: DDP reduces the gradients of one "
                          "backward pass over all parameters")


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

    def train(self) -> Dict[str, float]:
        """Run the remaining iterations; return the final evaluation results."""
        if self.start_iter < self.max_iter:
            self.trainer.train(self.start_iter, self.max_iter)
        else:
            logger.info("The checkpoint is at iteration %d of %d: nothing left to train", self.start_iter,
                        self.max_iter)
        if is_main_process():
            logger.info("Outputs in %s: checkpoints (model_final.pth), metrics.json, TensorBoard events, log.txt",
                        os.path.abspath(self.output_dir))
        return self.eval_hook.results


def build_run(cfg: Any, resume: bool = False) -> Run:
    """Build data, model, solver, checkpointer, writers and hooks; with `resume`, load the latest checkpoint."""
    validate_cfg(cfg)
    rank, world_size, device = init_distributed()
    setup_logging()
    seed_everything(cfg.SEED)
    task = task_of(cfg)
    train_set, val_set = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    check_num_classes(cfg, train_set, val_set)
    model = build_model(cfg).to(device)  # the same initial weights in every process
    seed_everything(cfg.SEED + rank)  # each process draws its own augmentations and dropout masks
    updates_per_epoch = count_updates_per_epoch(cfg, len(train_set), world_size)
    units, max_iter = build_run_solver(model, cfg, updates_per_epoch, world_size)
    amp = cfg.SOLVER.AMP
    amp_dtype = AMP_DTYPES[amp.DTYPE] if amp.ENABLED else None
    check_unit_support(units, amp_dtype, world_size)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    checkpointer = Checkpointer(cfg.OUTPUT_DIR, keep=cfg.TRAIN.CHECKPOINTS_TO_KEEP, enabled=is_main_process(),
                                metadata={"config": cfg.dump(), "world_size": world_size}, model=model, optimizers=StateDictGroup({u.name: u.optimizer for u in units}),
                                schedulers=StateDictGroup({u.name: u.scheduler for u in units}), grad_scaler=scaler)

    # Nothing above wrote a file: a bad config or data path has failed by now with the output folder untouched.
    if is_main_process():
        make_output_dir(cfg.OUTPUT_DIR)
        atomic_write(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), lambda f: f.write(cfg.dump().encode()))
        attach_log_file(cfg.OUTPUT_DIR)
    logger.info("Running with %d process(es) on %s; %d updates per epoch; %d images per update",
                world_size, device, updates_per_epoch, images_per_update(cfg, world_size))

    start_iter, checkpoint = 0, {}
    latest = checkpointer.latest() if resume else None
    if latest is not None:
        checkpoint = checkpointer.load(latest)  # also restores the RNG states
        start_iter = checkpoint["iteration"]
        report_resume(checkpoint, cfg, world_size)
    elif resume:
        logger.info("No checkpoint in %s: starting from scratch", cfg.OUTPUT_DIR)

    ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world_size > 1 else model
    loader = build_train_loader(cfg, train_set, rank, world_size, start_iter)
    val_loader = build_val_loader(cfg, val_set, rank, world_size)
    trainer = Trainer(ddp_model, task.loss_fn, loader, units, device,
                      accumulation=cfg.SOLVER.ACCUMULATION.STEPS, amp_dtype=amp_dtype,
                      grad_scaler=scaler if scaler.is_enabled() else None,
                      max_consecutive_skips=cfg.TRAIN.MAX_CONSECUTIVE_SKIPS)
    if "trainer" in checkpoint:
        trainer.load_state_dict(checkpoint["trainer"])
    checkpointer.objects["trainer"] = trainer  # saved from now on; loaded above, once the trainer exists
    eval_hook = EvalHook(cfg.TRAIN.EVAL_PERIOD, lambda: task.evaluate(model, val_loader, val_set, device))
    writers = [ConsoleWriter(max_iter), JSONWriter(safe_output_path(cfg.OUTPUT_DIR, "metrics.json"), start_iter),
               TensorboardWriter(cfg.OUTPUT_DIR, start_iter)] if is_main_process() else []
    trainer.register_hooks([
        IterationTimer(),
        LRSchedulerHook(units),
        eval_hook,
        PeriodicWriter(writers, cfg.TRAIN.WRITER_PERIOD),  # before the checkpoint: metrics up to it are on disk
        PeriodicCheckpointer(checkpointer, cfg.TRAIN.CHECKPOINT_PERIOD),
    ])
    return Run(model, units, trainer, eval_hook, start_iter, max_iter, cfg.OUTPUT_DIR)


def train(cfg: Any, resume: bool = False) -> Dict[str, float]:
    """Train as the config says; with `resume`, continue from the latest checkpoint in OUTPUT_DIR.

    Returns the final evaluation results.
    """
    return build_run(cfg, resume).train()


def load_trained_model(cfg: Any, weights: str) -> Tuple[Task, torch.nn.Module, Dataset, torch.device]:
    """The task and the model of a checkpoint (or of a bare state dict), with the validation set, on this
    process's device."""
    validate_cfg(cfg)
    _, _, device = init_distributed()
    setup_logging()
    task = task_of(cfg)
    val_set = build_dataset(cfg, "val")
    check_num_classes(cfg, val_set)
    model = build_model(cfg).to(device)
    state = read_checkpoint(weights)
    model.load_state_dict(state["model"] if "model" in state else state)
    return task, model, val_set, device


def evaluate(cfg: Any, weights: str) -> Dict[str, float]:
    """Evaluate the model weights of a checkpoint on the validation set."""
    task, model, val_set, device = load_trained_model(cfg, weights)
    val_loader = build_val_loader(cfg, val_set, get_rank(), get_world_size())
    results = task.evaluate(model, val_loader, val_set, device)
    logger.info("Evaluation of %s: %s", weights, ", ".join(f"{k} = {v:.4f}" for k, v in results.items()))
    return results
