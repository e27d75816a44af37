"""Pet solver: optimizer, parameter groups, clipping and LR schedules from yacs configs."""

__version__ = "0.1.0"
