"""The run's log: INFO lines on stdout from rank 0 (errors only from the others), copied to OUTPUT_DIR/log.txt
once the output folder may be written to; what was logged before waits in memory."""
import logging
import logging.handlers
import sys

from pet.engine.distributed.process_group import is_main_process
from pet.engine.persistence.safe_files import no_follow, safe_output_path

LOG_FORMAT = "[%(asctime)s %(name)s] %(message)s"


def setup_logging() -> None:
    """INFO lines on stdout from rank 0, only errors from other ranks (their warnings repeat rank 0's: the same
    config, the same data); rank 0 also buffers its lines for log.txt."""
    root = logging.getLogger("pet")
    for handler in list(root.handlers):  # a second run in the same process replaces the first one's handlers
        handler.close()
        root.removeHandler(handler)
    root.propagate = False
    main = is_main_process()
    root.setLevel(logging.INFO if main else logging.ERROR)
    console = logging.StreamHandler(sys.stdout if main else sys.stderr)
    console.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(console)
    if main:
        # Lines logged before the output folder may be written to (the parameter-group report) wait here.
        root.addHandler(logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1))


class LogFile(logging.FileHandler):
    """A log file handler that never opens its file through a symbolic link."""

    def _open(self):  # type: ignore[override]
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=no_follow)


def attach_log_file(output_dir: str) -> None:
    """Write the buffered lines and every later one to OUTPUT_DIR/log.txt."""
    root = logging.getLogger("pet")
    file_handler = LogFile(safe_output_path(output_dir, "log.txt"))
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    for handler in list(root.handlers):
        if isinstance(handler, logging.handlers.MemoryHandler):
            handler.setTarget(file_handler)
            handler.close()  # flushes into the file
            root.removeHandler(handler)
    root.addHandler(file_handler)
