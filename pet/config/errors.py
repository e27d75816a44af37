"""The one exception type for invalid configurations."""


class ConfigError(ValueError):
    """An invalid configuration: the message names the full key and what is allowed."""
