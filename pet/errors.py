"""The project's error types: each is a problem a user can act on, reported as one `error: ...` line by tools/.

Anything else a run raises is a bug and keeps its traceback.
"""


class ConfigError(ValueError):
    """An invalid configuration: the message names the full key and what is allowed."""


class DataError(RuntimeError):
    """Data that cannot be read during training or evaluation; the message names the path."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the run; the message names the path."""


class NonFiniteError(RuntimeError):
    """Too many updates in a row were skipped for non-finite losses or gradients."""


class NonFiniteWeightsError(NonFiniteError):
    """The model's weights turned inf or NaN (a hyperparameter the gradient guard cannot see); nothing was saved."""


class Preempted(RuntimeError):
    """A stop signal (SIGTERM, SIGUSR1, SIGINT) stopped the run between updates, with a checkpoint."""

    def __init__(self, signal_name: str, iteration: int) -> None:
        super().__init__(f"stopped by {signal_name} after {iteration} iterations; the checkpoint "
                         f"model_{iteration:07d}.pth is saved: run again with --resume")
        self.signal_name, self.iteration = signal_name, iteration


class CrashLoopError(RuntimeError):
    """A relaunched job failed again the way it failed before: relaunching once more would only repeat it."""


class DistributedError(RuntimeError):
    """A collective operation failed: another process stalled past DISTRIBUTED.TIMEOUT_S, or died."""


USER_ERRORS = (ConfigError, DataError, CheckpointError, NonFiniteError, DistributedError)
