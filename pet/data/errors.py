"""The error for data that cannot be read."""


class DataError(RuntimeError):
    """Data that cannot be read during training or evaluation; the message names the path."""
