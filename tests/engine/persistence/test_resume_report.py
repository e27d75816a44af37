"""What a resume reports: every key changed since the checkpoint, and a warning for changes that alter the
batches of the rest of the run."""
import logging

from pet.config import get_cfg
from pet.engine.persistence.resume_report import config_changes, report_resume


def checkpoint_of(*overrides, world_size=1):
    cfg = get_cfg()
    cfg.merge_from_list(list(overrides))
    return {"config": cfg.dump(), "world_size": world_size}


def test_every_changed_key_is_listed_in_key_order():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.2, "SEED", 3])
    assert config_changes(checkpoint_of("SOLVER.OPTIMIZER.BASE_LR", 0.05)["config"], cfg) == [
        ("SEED", 0, 3), ("SOLVER.OPTIMIZER.BASE_LR", 0.05, 0.2)]


def test_changes_that_alter_the_batches_are_warned_about(caplog):
    cfg = get_cfg()
    cfg.merge_from_list(["TRAIN.BATCH_SIZE", 64, "SOLVER.OPTIMIZER.BASE_LR", 0.2])
    with caplog.at_level(logging.INFO, logger="pet.engine.persistence.resume_report"):
        report_resume(checkpoint_of(world_size=2), cfg, world_size=1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["The world size changed: the checkpoint was written by 2 processes, this run has 1; the data "
                        "continue at the sample where they stopped",
                        "The resumed run's batches differ from those of an uninterrupted run: TRAIN.BATCH_SIZE 32 -> "
                        "64, processes 2 -> 1"]
    assert "Resuming with SOLVER.OPTIMIZER.BASE_LR = 0.2 (the checkpoint's run had 0.001)" in caplog.text


def test_an_unchanged_resume_reports_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="pet.engine.persistence.resume_report"):
        report_resume(checkpoint_of(), get_cfg(), world_size=1)
    assert caplog.text == ""
