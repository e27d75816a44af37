"""The trainer around the solver: hooks, checkpoints, event writers, evaluation and distributed set-up."""
from pet.engine.checkpoint import Checkpointer
from pet.engine.events import EventStorage
from pet.engine.hooks import (EvalHook, HookBase, IterationTimer, LRSchedulerHook, PeriodicCheckpointer,
                              PeriodicWriter)
from pet.engine.runner import evaluate, train
from pet.engine.tasks import classification_losses, model_losses
from pet.engine.trainer import Trainer

from pet.errors import CheckpointError

__all__ = ["CheckpointError", "Checkpointer", "EvalHook", "EventStorage", "HookBase", "IterationTimer",
           "LRSchedulerHook", "PeriodicCheckpointer", "PeriodicWriter", "Trainer", "classification_losses",
           "evaluate", "model_losses", "train"]
