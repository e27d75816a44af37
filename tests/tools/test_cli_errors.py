"""Every bad command line or config exits non-zero with one `error: ...` line naming the key or path."""
import importlib.util
import os
import re
import sys

import pytest

from tests.tools.conftest import DEFAULT_CFG, ROOT, TRAIN_NET


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_net, test_net, lr_find = load_tool("train_net"), load_tool("test_net"), load_tool("lr_find")


def write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


CASES = [
    (lambda t: [], r"the following arguments are required: --cfg"),
    (lambda t: ["--cfg", DEFAULT_CFG, "--frobnicate"], r"unrecognized arguments: --frobnicate"),
    (lambda t: ["--cfg", str(t / "missing.yaml")], r"cannot read config file .*missing\.yaml"),
    (lambda t: ["--cfg", write(t, "SOLVER: [\n")], r"config file .*bad\.yaml is not valid YAML"),
    (lambda t: ["--cfg", write(t, "SOLVER:\n  OPTIMIZER:\n    LR: 0.1\n")],
     r"unknown config key SOLVER\.OPTIMIZER\.LR"),
    (lambda t: ["--cfg", DEFAULT_CFG, "SOLVER.OPTIMIZER.BASE_LR"], r"odd number of items"),
    (lambda t: ["--cfg", DEFAULT_CFG, "SOLVER.OPTIMIZER.BASE_LRR", "0.1"],
     r"unknown config key SOLVER\.OPTIMIZER\.BASE_LRR; did you mean BASE_LR\?"),
    (lambda t: ["--cfg", DEFAULT_CFG, "SOLVER.OPTIMIZER.BASE_LR", "fast"],
     r"SOLVER\.OPTIMIZER\.BASE_LR: expected a float"),
    (lambda t: ["--cfg", DEFAULT_CFG, "SOLVER.SCHEDULER.GAMMA", "2.0"], r"SOLVER\.SCHEDULER\.GAMMA = 2\.0 is invalid"),
    (lambda t: ["--cfg", DEFAULT_CFG, "SOLVER.SCHEDULER.STEPS", "(700,)"],
     r"SOLVER\.SCHEDULER\.STEPS = \(700,\) is invalid; allowed: each step in \(0, SOLVER\.SCHEDULER\.TOTAL_ITERS = 600\)"),
    (lambda t: ["--cfg", DEFAULT_CFG, "MODEL.NAME", "resnet19"], r"MODEL\.NAME = 'resnet19' is invalid"),
    (lambda t: ["--cfg", DEFAULT_CFG, "SOLVER.OPTIMIZER.TYPE", "SGDW"], r"SOLVER\.OPTIMIZER\.TYPE = 'SGDW' is invalid"),
    (lambda t: ["--cfg", DEFAULT_CFG, "DATA.DATASET", "image_folder", "DATA.ROOT", str(t / "nothing")],
     r"DATA\.ROOT = '.*nothing' has no train/ folder"),
    (lambda t: ["--cfg", DEFAULT_CFG, "DATA.DATASET", "image_folder"], r"DATA\.ROOT is empty"),
    (lambda t: ["--cfg", DEFAULT_CFG, "SOLVER.SCHEDULER.TOTAL_EPOCHS", "0"],
     r"SOLVER\.SCHEDULER\.TOTAL_EPOCHS = 0 is invalid"),
    (lambda t: ["--cfg", DEFAULT_CFG, "TRAIN.BATCH_SIZE", "5000"],
     r"TRAIN\.BATCH_SIZE = 5000 is too large for the training set: 1437 samples cannot fill one update"),
]


@pytest.mark.parametrize("argv, message", CASES)
def test_train_net_errors(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)  # the configs' relative OUTPUT_DIR would land here
    code = train_net.run(train_net.main, argv(tmp_path))
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "output").exists()  # nothing written before the error


LR_FIND_CASES = [
    (["--start", "0"], r"--start 0\.0 and --end 10\.0: the sweep needs 2\.23e-308 <= start < end < inf"),
    (["--start", "1e-320"], r"--start 1e-320 and --end 10\.0: the sweep needs 2\.23e-308 <= start"),
    (["--start", "1", "--end", "0.1"], r"the sweep needs 2\.23e-308 <= start < end"),
    (["--iters", "1"], r"--iters 1 must be between 2 and 100000"),
    (["--iters", str(10 ** 17)], r"--iters 100000000000000000 must be between 2 and 100000"),
    (["SOLVER.OPTIMIZER.TYPE", "nosuchpackage.Fast"], r"SOLVER\.OPTIMIZER\.TYPE = 'nosuchpackage\.Fast': cannot import"),
    (["SOLVER.OPTIMIZER.KWARGS.warp", "9"], r"SOLVER\.OPTIMIZER\.KWARGS\.warp: SGD takes no argument 'warp'"),
    (["SOLVER.OPTIMIZERS.head.MODULES", "('fc',)"], r"the lr finder sweeps SOLVER\.OPTIMIZER\.BASE_LR of a single"),
]


@pytest.mark.parametrize("argv, message", LR_FIND_CASES)
def test_lr_find_errors_write_nothing(tmp_path, capsys, argv, message):
    code = lr_find.run(lr_find.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(tmp_path / "out"), *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_test_net_names_a_missing_checkpoint(tmp_path, capsys):
    code = test_net.run(test_net.main, ["--cfg", DEFAULT_CFG, "--weights", str(tmp_path / "none.pth")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: checkpoint {tmp_path / 'none.pth'} does not exist"


@pytest.mark.slow
def test_a_real_process_exits_non_zero_with_no_traceback(tmp_path, run_tool):
    result = run_tool([sys.executable, TRAIN_NET, "--cfg", DEFAULT_CFG, "SOLVER.SCHEDULER.POLICY", "CYCLIC"])
    assert result.returncode == 2
    assert result.stderr == ("error: SOLVER.SCHEDULER.POLICY = 'CYCLIC' is invalid; allowed: CONSTANT | STEP | COSINE | "
                             "STEP_COSINE | POLY | ONE_CYCLE | NOAM | CHAIN\n")
    assert "Traceback" not in result.stdout + result.stderr


def test_test_net_refuses_weights_of_another_model_or_no_weights(tmp_path, capsys):
    import torch
    from torch import nn

    torch.save(nn.Linear(3, 2).state_dict(), tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({"model": 5}, tmp_path / "five.pth")
    for name, message in (("other.pth", r"holds the weights of another model than MODEL\.NAME = 'resnet18': \d+ "
                                        r"missing \(backbone\.conv1\.weight"),
                          ("list.pth", r"holds no model weights \(a list"), ("five.pth", r"holds no model weights \(a int")):
        code = test_net.run(test_net.main, ["--cfg", DEFAULT_CFG, "--weights", str(tmp_path / name)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and re.search(message, lines[0]), lines


def test_a_refused_resume_leaves_the_folder_as_it_was(tmp_path, capsys):
    from pet.config import get_cfg
    from pet.engine.persistence.checkpointer import Checkpointer
    from pet.models import build_model
    from pet.solver import Optimizer

    cfg = get_cfg()
    cfg.merge_from_file(DEFAULT_CFG)
    model = build_model(cfg)
    Checkpointer(str(tmp_path), model=model, optimizers=Optimizer(model, cfg.SOLVER.OPTIMIZER).build()).save(
        "model_0000010", 10)  # a checkpoint of another layout: a bare optimizer where the run keeps a group
    (tmp_path / "config.yaml").write_text("the earlier run's config\n")
    before = sorted(os.listdir(tmp_path))
    code = train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(tmp_path), "--resume"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "model_0000010.pth has no state for" in lines[0], lines
    assert (tmp_path / "config.yaml").read_text() == "the earlier run's config\n"
    assert sorted(os.listdir(tmp_path)) == sorted(before + [".lock"])


@pytest.mark.parametrize("rank, said", [("0", True), ("1", False)])
def test_under_torchrun_a_config_error_is_said_by_rank_0_only(tmp_path, capsys, monkeypatch, rank, said):
    monkeypatch.setenv("RANK", rank)
    code = train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(tmp_path / "out"),
                                          "SOLVER.OPTIMIZER.BASE_LR", "-1"])
    err = capsys.readouterr().err
    assert code == 2 and (err.startswith("error: SOLVER.OPTIMIZER.BASE_LR") if said else err == "")


def test_other_errors_are_said_by_every_process(capsys, monkeypatch):
    from pet.engine.runs.cli import run
    from pet.errors import DistributedError

    monkeypatch.setenv("RANK", "1")

    def stalled(argv):
        raise DistributedError("process 1 of 2: a collective operation failed")
    assert run(stalled, []) == 2
    assert capsys.readouterr().err == "error: process 1 of 2: a collective operation failed\n"


def test_a_dry_run_describes_the_run_and_writes_nothing(tmp_path, capsys):
    code = train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "--dry-run", "OUTPUT_DIR", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "out").exists()
    assert "# The merged config" in out and "BASE_LR: 0.05" in out
    assert "# Data: digits, 1437 training and 360 validation samples; 44 updates per epoch of 32 images" in out
    assert "group      tensors  parameters" in out and "norm+bias" in out
    # LINEAR warmup over 50 updates from 0.1 x 0.05, steps at 400 and 520 (x 0.1 each), 600 updates in all.
    assert ("schedule: STEP, 600 updates; warmup 50 (LINEAR, from x0.1); milestones 400, 520; lr 0.005 at update 0, "
            "peak 0.05 at 50, 0.0005 at 599") in out
    assert out.rstrip().endswith("# The run: 600 updates; nothing was written (--dry-run)")


def test_help_shows_the_defaults(capsys):
    show_detections = load_tool("show_detections")
    with pytest.raises(SystemExit):
        show_detections.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "lowest score drawn (default: 0.4)" in text and "(default: 8)" in text


@pytest.mark.parametrize("tool", ["train_net", "test_net", "show_detections", "lr_find", "plot_schedule",
                                  "export_weights", "bench_routes", "bench_data"])
def test_help_says_each_default_once_and_only_where_there_is_one(tool, capsys):
    with pytest.raises(SystemExit):
        load_tool(tool).main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    for option_help in re.split(r" (?=-{1,2}[a-z])", text):
        assert option_help.count("default") <= 1, option_help


def test_lr_find_says_a_short_sweep_ended_rather_than_diverged(tmp_path, capsys):
    code = lr_find.run(lr_find.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(tmp_path), "--start", "1e-9",
                                      "--end", "1e-8", "--iters", "3", "TRAIN.BATCH_SIZE", "8"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == [f"error: the sweep ended after 3 updates without a descent to suggest from (the "
                                   f"curve is in {tmp_path / 'lr_find.png'}); give more --iters or a wider --start .. "
                                   "--end (see --help)"], lines


@pytest.mark.parametrize("tool", ["export_weights", "plot_schedule"])
@pytest.mark.parametrize("out, message", [
    (lambda t: str(t), r"--out '.*' is a folder; give a file path in it"),
    (lambda t: "", r"--out is empty; give a file path"),
    (lambda t: str(t / "a_file" / "x.png"), r"--out '.*x\.png' lies under .*a_file, which is a file"),
    (lambda t: str(t / "a_fifo"), r"--out '.*a_fifo' exists and is not a regular file; it is not replaced"),
    (lambda t: str(t / "new") + "/", r"--out '.*new/' is a folder; give a file path in it"),
    (lambda t: str(t / ("x" * 300 + ".png")), r"--out: the file name 'xxxx.*is too long"),
])
def test_an_output_path_that_cannot_be_a_file_is_one_error_line(tmp_path, capsys, tool, out, message):
    import torch

    (tmp_path / "a_file").write_text("x")
    os.mkfifo(tmp_path / "a_fifo")
    torch.save({"model": {"w": torch.ones(1)}, "iteration": 1, "rng": []}, tmp_path / "ckpt.pth")
    before = sorted(os.listdir(tmp_path))
    module = load_tool(tool)
    argv = ["--weights", str(tmp_path / "ckpt.pth")] if tool == "export_weights" else ["--cfg", DEFAULT_CFG]
    code = module.run(module.main, [*argv, "--out", out(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and re.search(message, lines[0]), lines
    assert sorted(os.listdir(tmp_path)) == before


def test_export_weights_refuses_a_checkpoint_whose_model_is_no_state_dict(tmp_path, capsys):
    import torch

    torch.save({"model": 5, "iteration": 1}, tmp_path / "five.pth")
    export = load_tool("export_weights")
    code = export.run(export.main, ["--weights", str(tmp_path / "five.pth"), "--out", str(tmp_path / "w.pth")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == [f"error: {tmp_path / 'five.pth'} holds no model weights (a int, not tensors by "
                                   "name)"]
    assert not (tmp_path / "w.pth").exists()


def test_export_weights_never_overwrites_its_input(tmp_path, capsys):
    import torch

    torch.save({"model": {"w": torch.ones(1)}, "iteration": 1, "rng": []}, tmp_path / "ckpt.pth")
    before = (tmp_path / "ckpt.pth").read_bytes()
    export = load_tool("export_weights")
    code = export.run(export.main, ["--weights", str(tmp_path / "ckpt.pth"), "--out", str(tmp_path / "ckpt.pth")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "is the input" in lines[0], lines
    assert (tmp_path / "ckpt.pth").read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], r"--images = 0 must be at least 1"), (["--scale", "-2"], r"--scale = -2 must be at least 1"),
    (["--score", "2"], r"--score = 2\.0 must be in \[0, 1\]"), (["--out", "x.txt"], r"--out 'x\.txt' must name a \.png"),
])
def test_show_detections_options_are_checked_first(tmp_path, capsys, argv, message):
    show = load_tool("show_detections")
    code = show.run(show.main, ["--cfg", DEFAULT_CFG, "--weights", str(tmp_path / "w.pth"), *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and re.search(message, lines[0]), lines


def test_plot_schedule_replaces_a_link_at_its_default_output_and_never_writes_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "schedule.png").symlink_to(victim)
    plot = load_tool("plot_schedule")
    assert plot.run(plot.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(tmp_path / "out")]) == 0
    assert victim.read_text() == "precious" and not os.path.islink(tmp_path / "out" / "schedule.png")


def test_the_resume_command_is_the_run_s_own_line_with_resume_once(monkeypatch):
    from pet.engine.runs.cli import resume_command

    monkeypatch.setattr(sys, "argv", ["tools/train_net.py"])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert resume_command(["--cfg", "a b.yaml", "SEED", "3"]) == "python tools/train_net.py --cfg 'a b.yaml' SEED 3 " \
                                                                  "--resume"
    assert resume_command(["--resume", "--cfg", "c.yaml"]) == "python tools/train_net.py --resume --cfg c.yaml"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resume_command(["--cfg", "c.yaml"]) == "torchrun <the same options> tools/train_net.py --cfg c.yaml --resume"
