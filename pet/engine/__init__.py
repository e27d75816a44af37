"""The trainer around the solver: hooks, checkpoints, event writers, evaluation and distributed set-up."""
from pet.engine.evaluation.tasks import classification_losses, model_losses
from pet.engine.loop.events import EventStorage
from pet.engine.loop.hooks import (EvalHook, HookBase, IterationTimer, LRSchedulerHook, PeriodicCheckpointer,
                                   PeriodicWriter)
from pet.engine.loop.trainer import Trainer
from pet.engine.persistence.checkpointer import Checkpointer
from pet.engine.runs.runner import evaluate, train

from pet.errors import CheckpointError

__all__ = ["CheckpointError", "Checkpointer", "EvalHook", "EventStorage", "HookBase", "IterationTimer",
           "LRSchedulerHook", "PeriodicCheckpointer", "PeriodicWriter", "Trainer", "classification_losses",
           "evaluate", "model_losses", "train"]
