"""tools/gpu_check.sh, which runs on a lent GPU, checked here on the CPU: its --dry-run lists every step in order
with its limit inside the 8-minute budget, each step names files and options that exist, and bad arguments are
one error line."""
import os
import re
import subprocess
import sys

from tests.tools.conftest import ROOT

SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")
STEPS = ["bench_solver", "differential", "digits_float16", "digits_bfloat16", "shapes", "end_to_end", "knobs",
         "fsdp_nccl"]


def gpu_check(*args):
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=60)


def test_the_dry_run_lists_every_step_in_order_within_the_budget_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu"
    result = gpu_check(str(out), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    deadline = int(re.search(r"within (\d+) s in all", lines[0]).group(1))
    assert deadline <= 8 * 60 - 30  # room for start-up and the summary
    steps = [re.match(r"\s+(\S+)\s+at most\s+(\d+) s: (.*)", line).groups() for line in lines[1:]]
    assert [name for name, _, _ in steps] == STEPS
    assert all(0 < int(limit) <= deadline for _, limit, _ in steps)
    for name, _, command in steps:
        assert str(out) in command or name == "differential", name  # results under OUT_DIR
        for path in re.findall(r"(?:tools|cfgs|tests)/\S+\.(?:py|yaml)", command):
            assert os.path.exists(os.path.join(ROOT, path)), (name, path)
    assert "--device cuda" in steps[0][2] and "PET_TEST_DEVICE=cuda" in steps[1][2]
    assert not out.exists()


def test_every_option_the_steps_give_a_python_tool_is_one_it_accepts():
    steps = gpu_check("unused", "--dry-run").stdout.splitlines()[1:]
    for line in steps:
        command = line.split(": ", 1)[1].split()
        if not command[1].startswith("tools/bench_"):
            continue
        usage = subprocess.run([sys.executable, os.path.join(ROOT, command[1]), "--help"],
                               capture_output=True, text=True, timeout=60).stdout
        for option in (word for word in command[2:] if word.startswith("--")):
            assert option in usage, (command[1], option)


def test_bad_arguments_are_one_error_line_with_exit_code_2(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for args, message in (((), "error: OUT_DIR is missing"), (("a", "b"), "error: one OUT_DIR only"),
                          (("--fast", "x"), "error: unknown option --fast"),
                          ((str(a_file),), "is not a folder"), (("with space",), "holds a space")):
        result = gpu_check(*args)
        assert result.returncode == 2 and result.stdout == "", args
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: ") and message in line, (args, line)
