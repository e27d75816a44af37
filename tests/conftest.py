"""Suite-wide fixtures."""
import logging
import os

import pytest
from hypothesis import settings

# `make test` must give the same verdict on every run: the fuzzers draw a fixed sample by default. Set
# HYPOTHESIS_PROFILE=explore to search with fresh random draws (and keep what they find as @example).
settings.register_profile("fixed", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))


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


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """DATA.ROOT holding the tiny shapes set of tests/toy_detection.py, generated once per session."""
    from tests.toy_detection import make_tiny_shapes

    root = tmp_path_factory.mktemp("datasets")
    make_tiny_shapes(str(root))
    return str(root)
