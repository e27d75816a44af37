"""Errors that stop a training run for a reason the user can act on."""


class NonFiniteError(RuntimeError):
    """Too many updates in a row were skipped for non-finite losses or gradients."""
