"""--dry-run says how each update is made and the warnings a run would give, one line each."""
from pet.engine.runs.cli import load_config
from pet.engine.runs.dry_run import describe_run
from tests.tools.conftest import DEFAULT_CFG


def described(tmp_path, *overrides):
    return describe_run(load_config(DEFAULT_CFG, ["OUTPUT_DIR", str(tmp_path / "out"), *overrides]))


def section(text, title):
    part = text.split(f"# {title}\n", 1)[1]
    return part.split("\n\n", 1)[0].splitlines()


def test_the_defaults_are_said_as_such(tmp_path):
    text = described(tmp_path)
    assert section(text, "Each update") == [
        "clipping: off for the optimizer; non-finite gradients skip the update", "mixed precision: off (float32)",
        "accumulation: off (one batch of 32 per update)", "weight EMA: off",
        "speed knobs: none (eager); images of 8x8 pixels"]
    assert section(text, "Warnings (a run logs them too)") == ["none"]
    assert not (tmp_path / "out").exists()


def test_what_a_config_turns_on_and_what_it_leaves_ignored_are_said(tmp_path):
    text = described(tmp_path, "SOLVER.SCHEDULER.POLICY", "COSINE", "SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", "True",
                     "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE", "norm", "SOLVER.AMP.ENABLED", "True",
                     "SOLVER.ACCUMULATION.STEPS", "2", "SOLVER.EMA.ENABLED", "True", "MODEL.CHANNELS_LAST", "True",
                     "TRAIN.COMPILE_MODE", "max-autotune")
    lines = section(text, "Each update")
    assert lines[0] == "clipping: norm of the 2-norm at 1 for the optimizer; non-finite gradients skip the update"
    assert lines[1].startswith("mixed precision: AUTO autocast")
    assert lines[2] == "accumulation: 2 micro-batches of 32 per update"
    assert lines[3] == "weight EMA: decay 0.9998, warmup 2000 updates, every 1"
    assert lines[4] == "speed knobs: channels_last; images of 8x8 pixels"
    assert sorted(section(text, "Warnings (a run logs them too)")) == [
        "SOLVER.SCHEDULER.STEPS = (400, 520) is ignored: POLICY COSINE does not read it",
        "TRAIN.COMPILE_MODE = 'max-autotune' is ignored: TRAIN.COMPILE is False"]
