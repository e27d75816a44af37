"""Checkpoints that do not stall training (TRAIN.ASYNC_CHECKPOINT): the state is copied between two updates, and
the copy is written by a thread of its own while training goes on.

`snapshot` copies every tensor of a nested state (on the CPU: what the next update will overwrite in place is
kept as it was); `BackgroundWrites` runs one write at a time, makes the next one wait for the one before, and
raises a write's error where the trainer waits for it next (the next checkpoint, or the end of the run). The
writes themselves stay atomic (temporary file, fsync, rename), so a process killed in the middle of one leaves
the previous checkpoint intact, exactly as a synchronous write would.
"""
import threading
from typing import Any, Callable, Optional

import torch


def snapshot(tree: Any) -> Any:
    """A copy of `tree` (nested dicts, lists and tuples) whose tensors are copies on the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {key: snapshot(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(snapshot(value) for value in tree)
    return tree


class BackgroundWrites:
    """At most one write in flight, in a thread; `wait()` for it, and for its error."""

    def __init__(self) -> None:
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def submit(self, write: Callable[[], None]) -> None:
        """Run `write()` in the background, once the write before it has finished."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(write,), name="pet-checkpoint-writer")
        self._thread.start()  # not a daemon: the interpreter finishes a write it has begun before it exits

    def _run(self, write: Callable[[], None]) -> None:
        try:
            write()
        except BaseException as e:  # kept for the trainer, which raises it where it waits next
            self._error = e

    def wait(self) -> None:
        """Return once no write is in flight; raise the error of the last one, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error
