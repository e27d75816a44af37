"""The README's shell commands in the order a newcomer types them, in a fresh shell: `make`'s environment activated
as the Quick start says, every program and tool of the Training block is found and starts."""
import os
import re
import subprocess

import pytest

from tests.tools.conftest import ROOT

pytestmark = pytest.mark.slow  # real shells and interpreters


def bash_blocks(readme):
    return re.findall(r"```bash\n(.*?)```", open(os.path.join(ROOT, readme), encoding="utf-8").read(), re.S)


def fresh_shell_environment():
    """What a new terminal has: no activated environment, no PYTHONPATH, the venv's folder not on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = os.path.join(ROOT, ".venv", "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if os.path.abspath(p) != venv_bin)
    return env


def commands(block):
    return [line.split("#")[0].strip() for line in block.splitlines()]


def test_both_readmes_give_the_same_first_commands():
    assert [commands(block) for block in bash_blocks("README.md")[:2]] == \
        [commands(block) for block in bash_blocks("README_zh.md")[:2]]


def test_the_training_commands_start_in_a_fresh_shell_after_the_quick_start():
    quick_start, training = bash_blocks("README.md")[:2]
    activate = [line.split("#")[0].strip() for line in quick_start.splitlines() if line.startswith("source ")]
    assert activate == ["source .venv/bin/activate"]
    starts = []
    for line in training.splitlines():
        words = line.split("#")[0].split()
        if words[0] in ("python", "torchrun"):
            script = next(word for word in words if word.startswith("tools/"))
            starts.append(f"{words[0]} {script} --help > /dev/null")
        else:
            starts.append(f"{words[0]} --help > /dev/null")
    script = " && ".join([activate[0], *starts, "echo all-started"])
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=fresh_shell_environment(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip() == "all-started", result.stderr[-2000:]
    assert len(starts) >= 6 and any(s.startswith("torchrun") for s in starts)
