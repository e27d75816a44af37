"""Suite-wide fixtures."""
import logging

import pytest


@pytest.fixture(autouse=True)
def restore_pet_logger():
    """A run configures the `pet` logger (its own handlers, no propagation); undo that after each test, so that
    later tests still see log records through pytest's caplog."""
    logger = logging.getLogger("pet")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]
