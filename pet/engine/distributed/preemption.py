"""Stopping a run cleanly when the cluster asks: SIGTERM and SIGUSR1 (what SLURM sends before a time limit) and
SIGINT (Ctrl-C) stop it at the next update boundary, on every process, with a checkpoint there.

A signal only sets a flag; after each update the processes agree on it (one all-reduce when there are several),
so all of them stop after the same update and none waits on the others forever. A second SIGINT interrupts at
once, as Python's default would.
"""
import logging
import signal
from typing import Any, Dict, Optional

import torch

from pet.engine.distributed.process_group import all_reduce_sum, get_world_size

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopSignals:
    """Signal handlers that turn a stop signal into a request the trainer honours between updates."""

    def __init__(self) -> None:
        self.received: Optional[str] = None
        self._previous: Dict[int, Any] = {}

    def install(self) -> None:
        """Handle the stop signals until `uninstall()` (main thread only; elsewhere a no-op)."""
        try:
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        except ValueError:  # not the main thread: leave signals to the program
            self._previous.clear()

    def uninstall(self) -> None:
        """Put the previous handlers back."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: Any) -> None:
        name = signal.Signals(number).name
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        if self.received is None:
            logger.warning("%s received: stopping after the current update, with a checkpoint", name)
            self.received = name

    def agreed(self) -> Optional[str]:
        """The signal that stops the run after this update on every process, or None: a request on any process
        stops them all."""
        if get_world_size() == 1:
            return self.received
        requested = all_reduce_sum(torch.tensor([1.0 if self.received else 0.0])).item() > 0
        return (self.received or "a stop signal on another process") if requested else None
