"""tools/bench_routes.py --quick runs, times the preset's routes against the same optimizers by hand, trains the
digits with both configs and writes its tables (timings and accuracies are not asserted: they are no test)."""
import re

import pytest

from tests.tools.test_cli_errors import load_tool

pytest.importorskip("timm.optim")


@pytest.mark.slow  # two short trainings in subprocesses
def test_quick_routes_benchmark_writes_its_tables(tmp_path):
    bench_routes = load_tool("bench_routes")
    out = tmp_path / "routes.md"
    report = bench_routes.main(["--quick", "--out", str(out)])
    assert out.read_text() == report
    (row,) = [line for line in report.splitlines() if line.startswith("| resnet18 |")]
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[1] == "hidden: timm.Muon, 19, 11,157,504; rest: torch.AdamW, 43, 532,008"
    assert all(re.fullmatch(r"[\d.]+", cell) for cell in cells[2:])
    accuracy = [line for line in report.splitlines() if line.startswith("| `cfgs/digits/")]
    assert [line.split("|")[1].strip() for line in accuracy] == ["`cfgs/digits/resnet18_muon.yaml`",
                                                                 "`cfgs/digits/resnet18_sgd_step.yaml`"]
    assert all(re.fullmatch(r"\| `[^`]+` \| [\d.]+ \| [\d.]+ \|", line) for line in accuracy)
