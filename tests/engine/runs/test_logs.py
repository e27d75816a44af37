"""The run's log: rank 0 says everything once; the other ranks only what is theirs alone (errors)."""
import logging

import pytest

from pet.engine.runs import logs


@pytest.mark.parametrize("main, shown", [(True, ["info", "warning", "error"]), (False, ["error"])])
def test_a_warning_is_said_once_by_rank_0_not_by_every_process(monkeypatch, capsys, main, shown):
    monkeypatch.setattr(logs, "is_main_process", lambda: main)
    logs.setup_logging()
    logger = logging.getLogger("pet.engine.runs.some_module")
    logger.info("info")
    logger.warning("warning")
    logger.error("error")
    captured = capsys.readouterr()
    lines = (captured.out if main else captured.err).splitlines()
    assert [line.rsplit("] ", 1)[1] for line in lines] == shown
