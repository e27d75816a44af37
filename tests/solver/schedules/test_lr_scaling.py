"""The linear scaling rule: BASE_LR x images / REFERENCE_BATCH_SIZE, iteration counts x the inverse if asked."""
from pet.config import get_cfg, optimizer_entries
from pet.solver.schedules.lr_scaling import apply_linear_scaling


def solver(*overrides):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.1, "SOLVER.LR_SCALING.REFERENCE_BATCH_SIZE", 256,
                         *overrides])
    return cfg.SOLVER


def test_no_reference_means_no_change():
    cfg = get_cfg().SOLVER
    assert apply_linear_scaling(cfg, 1024) is cfg


def test_lr_scales_with_the_batch_and_the_original_is_kept():
    original = solver()
    scaled = apply_linear_scaling(original, 1024)
    assert scaled.OPTIMIZER.BASE_LR == 0.4 and original.OPTIMIZER.BASE_LR == 0.1
    assert scaled.SCHEDULER.TOTAL_ITERS == 40000  # the schedule only moves with SCALE_SCHEDULE


def test_schedule_scaling_keeps_the_number_of_images():
    scaled = apply_linear_scaling(solver("SOLVER.LR_SCALING.SCALE_SCHEDULE", True, "SOLVER.SCHEDULER.POLICY", "CHAIN",
                                         "SOLVER.SCHEDULER.CHAIN.PHASES", "(('CONSTANT', 0, 20000), "
                                                                          "('COSINE', 20000, 40000))"), 1024)
    sched = scaled.SCHEDULER
    assert (sched.TOTAL_ITERS, sched.STEPS, sched.WARM_UP_ITERS) == (10000, (7500,), 125)
    assert sched.CHAIN.PHASES == (("CONSTANT", 0, 5000), ("COSINE", 5000, 10000))
    assert sched.NOAM.WARMUP_ITERS == 4000  # read by NOAM only: left as it is


def test_noam_warmup_counts_iterations_in_either_unit():
    for units in (["SOLVER.SCHEDULER.TOTAL_ITERS", 40000], ["SOLVER.SCHEDULER.TOTAL_EPOCHS", 90]):
        scaled = apply_linear_scaling(solver("SOLVER.LR_SCALING.SCALE_SCHEDULE", True, "SOLVER.SCHEDULER.POLICY",
                                             "NOAM", "SOLVER.SCHEDULER.WARM_UP_ITERS", 0, *units), 1024)
        assert scaled.SCHEDULER.NOAM.WARMUP_ITERS == 1000


def entries_of(tree, images):
    cfg = get_cfg()
    cfg.merge_from_other_cfg({"SOLVER": tree})
    return {name: apply_linear_scaling(entry, images) for name, entry in optimizer_entries(cfg.SOLVER).items()}


def test_named_optimizers_scale_too():
    entries = entries_of({"LR_SCALING": {"REFERENCE_BATCH_SIZE": 64}, "OPTIMIZERS": {
        "a": {"MODULES": ["x"], "OPTIMIZER": {"BASE_LR": 0.01}}, "b": {"MODULES": ["y"]}}}, 32)
    assert entries["a"].OPTIMIZER.BASE_LR == 0.005
    assert entries["b"].OPTIMIZER.BASE_LR == 0.0005  # the top-level BASE_LR it inherits, scaled


def test_epoch_units_of_a_named_optimizer_are_not_rescaled():
    entries = entries_of({
        "LR_SCALING": {"REFERENCE_BATCH_SIZE": 64, "SCALE_SCHEDULE": True},
        "SCHEDULER": {"TOTAL_EPOCHS": 10, "STEPS": [6]},
        "OPTIMIZERS": {"a": {"MODULES": ["x"], "SCHEDULER": {"STEPS": [5, 8], "WARM_UP_ITERS": 40}},
                       "b": {"MODULES": ["y"], "SCHEDULER": {"TOTAL_EPOCHS": None, "TOTAL_ITERS": 400,
                                                            "STEPS": [200]}}}}, 256)  # 4x: iteration counts / 4
    assert tuple(entries["a"].SCHEDULER.STEPS) == (5, 8)  # epochs, inherited from the top-level units
    assert entries["a"].SCHEDULER.WARM_UP_ITERS == 10
    assert (entries["b"].SCHEDULER.TOTAL_ITERS, tuple(entries["b"].SCHEDULER.STEPS)) == (100, (50,))
