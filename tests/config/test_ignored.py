"""Keys that the rest of the config makes meaningless are reported (key, value, reason), never dropped silently."""
import pytest

from pet.config import get_cfg, ignored_keys


def ignored(*overrides, tree=None):
    cfg = get_cfg()
    if tree:
        cfg.merge_from_other_cfg(tree)
    cfg.merge_from_list(list(overrides))
    return {key: (value, why) for key, value, why in ignored_keys(cfg)}


def test_the_defaults_ignore_nothing():
    assert ignored() == {}


@pytest.mark.parametrize("overrides, key, reason", [
    (["SOLVER.SCHEDULER.POLICY", "COSINE", "SOLVER.SCHEDULER.STEPS", (10, 20)], "SOLVER.SCHEDULER.STEPS",
     "POLICY COSINE does not read it"),
    (["SOLVER.SCHEDULER.MIN_LR_FACTOR", 0.1], "SOLVER.SCHEDULER.MIN_LR_FACTOR", "POLICY STEP does not read it"),
    (["SOLVER.SCHEDULER.TOTAL_EPOCHS", 5, "SOLVER.SCHEDULER.TOTAL_ITERS", 600], "SOLVER.SCHEDULER.TOTAL_ITERS",
     "TOTAL_EPOCHS is set"),
    (["SOLVER.SCHEDULER.WARM_UP_EPOCHS", 1.0, "SOLVER.SCHEDULER.WARM_UP_ITERS", 50], "SOLVER.SCHEDULER.WARM_UP_ITERS",
     "WARM_UP_EPOCHS is set"),
    (["SOLVER.SCHEDULER.WARM_UP_ITERS", 0, "SOLVER.SCHEDULER.WARM_UP_METHOD", "EXP"],
     "SOLVER.SCHEDULER.WARM_UP_METHOD", "there is no warmup"),
    (["SOLVER.SCHEDULER.MOMENTUM.END", 0.8], "SOLVER.SCHEDULER.MOMENTUM.END", "MOMENTUM.POLICY is CONSTANT"),
    (["SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 5.0], "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE",
     "CLIP_GRADIENTS.ENABLED is False"),
    (["SOLVER.OPTIMIZER.LARS.TRUST_COEFFICIENT", 0.01], "SOLVER.OPTIMIZER.LARS.TRUST_COEFFICIENT", "not LARS"),
    (["SOLVER.AMP.DTYPE", "bfloat16"], "SOLVER.AMP.DTYPE", "SOLVER.AMP.ENABLED is False"),
    (["SOLVER.LR_SCALING.SCALE_SCHEDULE", True], "SOLVER.LR_SCALING.SCALE_SCHEDULE", "REFERENCE_BATCH_SIZE is 0"),
    (["DATA.SHAPES.NUM_TRAIN", 50], "DATA.SHAPES.NUM_TRAIN", "DATA.DATASET is digits, not shapes"),
    (["DATA.IMAGE_SIZE", 32], "DATA.IMAGE_SIZE", "DATA.DATASET digits does not read it"),
])
def test_an_unused_key_is_reported_with_the_reason(overrides, key, reason):
    found = ignored(*overrides)
    assert key in found and reason in found[key][1], found
    assert found[key][0] == overrides[overrides.index(key) + 1]  # the value as set
    assert len(found) == 1, found


def test_a_key_a_policy_reads_is_not_reported():
    assert ignored("SOLVER.SCHEDULER.POLICY", "COSINE", "SOLVER.SCHEDULER.MIN_LR_FACTOR", 0.1) == {}
    assert ignored("SOLVER.SCHEDULER.POLICY", "CHAIN", "SOLVER.SCHEDULER.CHAIN.PHASES", "(('STEP', 0, 40000),)",
                   "SOLVER.SCHEDULER.GAMMA", 0.5) == {}  # a STEP phase reads GAMMA


def test_named_optimizers_report_only_the_keys_they_set_themselves():
    found = ignored(tree={"SOLVER": {"SCHEDULER": {"STEPS": [100]}, "OPTIMIZERS": {
        "head": {"MODULES": ["head"], "SCHEDULER": {"POLICY": "COSINE", "GAMMA": 0.5}}}}})
    assert set(found) == {"SOLVER.OPTIMIZERS.head.SCHEDULER.GAMMA"}  # not the STEPS it inherits
    assert found["SOLVER.OPTIMIZERS.head.SCHEDULER.GAMMA"] == (0.5, "POLICY COSINE does not read it")
