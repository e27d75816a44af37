"""tools/bench_fsdp.py --quick runs 2 processes and writes its table (timings are not asserted: they are no test)."""
import re

import pytest

from tests.tools.test_cli_errors import load_tool

bench_fsdp = load_tool("bench_fsdp")


@pytest.mark.slow  # real processes
def test_quick_fsdp_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "fsdp.md"
    report = bench_fsdp.main(["--quick", "--repeats", "2", "--out", str(out)])
    assert out.read_text() == report
    assert report.startswith("### FSDP2, 2 processes on CPU (gloo)")
    row = next(line for line in report.splitlines() if line.startswith("| mobilenet_v3_small |"))
    assert all(re.fullmatch(r" [\d.]+ ", cell) for cell in row.split("|")[2:-1])
