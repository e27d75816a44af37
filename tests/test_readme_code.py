"""Every Python block of both READMEs runs as written (in a scratch folder that sees the repository's cfgs/)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def python_blocks(readme):
    text = open(os.path.join(ROOT, readme), encoding="utf-8").read()
    return [re.sub(rf"^{indent}", "", code, flags=re.M) for indent, code in BLOCK.findall(text)]


BLOCKS = [(readme, index, code) for readme in ("README.md", "README_zh.md")
          for index, code in enumerate(python_blocks(readme))]


def test_both_readmes_have_the_same_python_blocks():
    assert len(python_blocks("README.md")) >= 2
    assert python_blocks("README.md") == python_blocks("README_zh.md")


@pytest.mark.slow  # real training, in a new process
@pytest.mark.parametrize("code", [code for readme, _, code in BLOCKS if readme == "README.md"],
                         ids=[f"README.md-{index}" for readme, index, _ in BLOCKS if readme == "README.md"])
def test_a_readme_python_block_runs_as_written(tmp_path, code):
    os.symlink(os.path.join(ROOT, "cfgs"), tmp_path / "cfgs")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "a block should show what it did"
