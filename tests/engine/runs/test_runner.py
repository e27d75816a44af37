"""The run's pieces decided from the config: the mixed-precision dtype of each device; a whole run saved, loaded
and continued in process; a resume at another batch."""
import logging
import os

import pytest
import torch

from pet.engine.runs.runner import amp_dtype_for


@pytest.mark.parametrize("name, device, dtype", [("AUTO", "cpu", torch.bfloat16), ("AUTO", "cuda", torch.float16),
                                                 ("bfloat16", "cuda", torch.bfloat16),
                                                 ("float16", "cuda", torch.float16)])
def test_the_amp_dtype_of_each_device(caplog, name, device, dtype):
    with caplog.at_level(logging.WARNING, logger="pet.engine.runs.runner"):
        assert amp_dtype_for(name, torch.device(device)) == dtype
    assert not caplog.records


def test_float16_on_cpu_is_taken_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="pet.engine.runs.runner"):
        assert amp_dtype_for("float16", torch.device("cpu")) == torch.float16
    (record,) = caplog.records
    assert record.getMessage().startswith("SOLVER.AMP.DTYPE float16 on CPU: torch's CPU float16 kernels are many "
                                          "times slower than float32")


def train_in_process(output_dir, *overrides):
    from tests.engine.test_user_builders import USER
    from tests.tools.test_cli_errors import DEFAULT_CFG, train_net

    return train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(output_dir), *USER,
                                          "SOLVER.SCHEDULER.TOTAL_ITERS", "8", "SOLVER.SCHEDULER.STEPS", "(6,)",
                                          "SOLVER.SCHEDULER.WARM_UP_ITERS", "2", "TRAIN.BATCH_SIZE", "8",
                                          "TRAIN.CHECKPOINT_PERIOD", "4", "TRAIN.WRITER_PERIOD", "1", *overrides])


def back_to_iteration_4(folder):
    """The folder as a run killed after its checkpoint at iteration 4 left it (minus the later metrics)."""
    (folder / "model_final.pth").unlink()
    (folder / "last_checkpoint").write_text("model_0000004.pth\n")


# Muon on the convolution kernel, AdamW on the rest, with accumulation, bfloat16 autocast and EMA on top.
ROUTED = ["SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.BASE_LR", "0.01",
          "SOLVER.OPTIMIZERS.hidden.MIN_NDIM", "4", "SOLVER.OPTIMIZERS.hidden.OPTIMIZER.TYPE", "MUON",
          "SOLVER.OPTIMIZERS.rest.LOSSES", "()", "SOLVER.ACCUMULATION.STEPS", "2", "SOLVER.AMP.ENABLED", "True",
          "SOLVER.EMA.ENABLED", "True", "SOLVER.EMA.WARMUP_ITERS", "2"]


@pytest.mark.parametrize("overrides", [[], ROUTED], ids=["one optimizer", "routed Muon and AdamW, accumulated"])
def test_a_run_saved_loaded_and_continued_in_process_ends_as_the_uninterrupted_one(tmp_path, overrides):
    import json
    import shutil

    from pet.engine.persistence.checkpointer import read_checkpoint

    assert train_in_process(tmp_path / "whole", *overrides) == 0
    shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
    back_to_iteration_4(tmp_path / "resumed")
    assert train_in_process(tmp_path / "resumed", "--resume", *overrides) == 0
    whole, resumed = (read_checkpoint(str(tmp_path / name / "model_final.pth")) for name in ("whole", "resumed"))
    for name, tensor in whole["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    assert list(whole["optimizers"]) == (["hidden", "rest"] if overrides else [""])
    for optimizer, saved in whole["optimizers"].items():
        for name, state in saved["state"].items():
            torch.testing.assert_close(resumed["optimizers"][optimizer]["state"][name], state, rtol=0, atol=0)
    assert ("ema" in whole) == bool(overrides)
    torch.testing.assert_close(resumed.get("ema"), whole.get("ema"), rtol=0, atol=0)
    rows = [[json.loads(line) for line in open(tmp_path / name / "metrics.json")] for name in ("whole", "resumed")]
    assert [row["iteration"] for row in rows[1]] == list(range(8))
    assert [(r["loss"], r.get("lr")) for r in rows[0]] == [(r["loss"], r.get("lr")) for r in rows[1]]


def test_a_resume_with_another_batch_continues_at_the_sample_where_the_run_stopped(tmp_path):
    from pet.engine.runs.cli import load_config
    from pet.engine.runs.runner import build_run
    from tests.engine.test_user_builders import USER
    from tests.tools.test_cli_errors import DEFAULT_CFG

    assert train_in_process(tmp_path) == 0  # 4 updates of 8 images before the checkpoint: 32 samples taken
    back_to_iteration_4(tmp_path)
    cfg = load_config(DEFAULT_CFG, ["OUTPUT_DIR", str(tmp_path), *USER, "SOLVER.SCHEDULER.TOTAL_ITERS", "8",
                                    "SOLVER.SCHEDULER.STEPS", "(6,)", "TRAIN.BATCH_SIZE", "16"])
    run = build_run(cfg, resume=True)
    run.lock.release()
    order = torch.randperm(256, generator=torch.Generator().manual_seed(cfg.SEED)).tolist()  # epoch 0's shuffle
    first = [index for _, index in next(iter(run.trainer.data.batch_sampler))]  # (epoch, index): seeded samples
    assert first == order[32:48]  # not order[64:80], where 4 updates of the new batch would be


def final_weights(folder):
    from pet.engine.persistence.checkpointer import read_checkpoint

    return read_checkpoint(str(folder / "model_final.pth"))["model"]


@pytest.mark.slow
def test_checkpoints_cross_the_compile_switch_both_ways_and_compile_changes_nothing_beyond_rounding(tmp_path, capsys):
    import json
    import shutil

    compiled = ["TRAIN.COMPILE", "True"]
    assert train_in_process(tmp_path / "eager") == 0
    capsys.readouterr()
    assert train_in_process(tmp_path / "compiled", *compiled) == 0
    log = capsys.readouterr().out
    warm_up = [line for line in log.splitlines() if "TRAIN.COMPILE: the first update" in line]
    assert len(warm_up) == 1 and "left out of `time` and the ETA" in warm_up[0]
    assert "runs eagerly" not in log  # compiled indeed, not fallen back
    rows = [json.loads(line) for line in open(tmp_path / "compiled" / "metrics.json")]
    assert "time" not in rows[0] and all("time" in row and "data_time" in row for row in rows[1:])
    for switch, source in ((compiled, "eager"), ([], "compiled")):  # resume at 4 with the other setting
        resumed = tmp_path / f"{source}-then-other"
        shutil.copytree(tmp_path / source, resumed)
        back_to_iteration_4(resumed)
        assert train_in_process(resumed, "--resume", *switch) == 0
    eager = final_weights(tmp_path / "eager")
    for name in ("compiled", "eager-then-other", "compiled-then-other"):
        weights = final_weights(tmp_path / name)
        assert list(weights) == list(eager), name  # the same names: no `_orig_mod.`
        for key, tensor in eager.items():
            torch.testing.assert_close(weights[key].float(), tensor.float(), rtol=1e-4, atol=1e-5, msg=f"{name} {key}")


def test_paths_are_shown_relative_below_the_working_directory_and_absolute_elsewhere(tmp_path, monkeypatch):
    from pet.engine.runs.runner import shown_path

    monkeypatch.chdir(tmp_path)
    assert shown_path(str(tmp_path / "output" / "digits")) == os.path.join("output", "digits")
    assert shown_path("output/digits") == os.path.join("output", "digits")
    assert shown_path(str(tmp_path.parent / "elsewhere")) == str(tmp_path.parent / "elsewhere")
