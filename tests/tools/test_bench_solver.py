"""tools/bench_solver.py --quick runs and writes its table (timings are not asserted: they are no test)."""
import re

from tests.tools.test_cli_errors import load_tool

bench_solver = load_tool("bench_solver")


def test_quick_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "bench.md"
    report = bench_solver.main(["--quick", "--repeats", "2", "--out", str(out)])
    assert out.read_text() == report
    assert report.startswith("### CPU: ")
    header = next(line for line in report.splitlines() if line.startswith("| model |"))
    assert "| ours ms | bare ms | pet ms |" in header and "| ours / bare | pet / ours |" in header
    rows = [line for line in report.splitlines() if line.startswith("| mobilenet_v3_small |")]
    assert [row.split("|")[2].strip() for row in rows[:4]] == ["SGD", "ADAMW", "SGD", "ADAMW"]  # solver, default
    cells = rows[0].split("|")[3:-1]
    assert cells[0].strip() == "142" and all(re.fullmatch(r"\s*[\d.]+\s*", cell) for cell in cells)
    assert "Default configuration (clipping off, the non-finite guard on):" in report
    assert all(re.fullmatch(r"\s*[\d.]+\s*", cell) for cell in rows[2].split("|")[3:-1])
    ema_header = next(line for line in report.splitlines() if line.startswith("| model | state tensors |"))
    assert "| ours ms |" in ema_header and "torch AveragedModel ms |" in ema_header
    ema_cells = rows[4].split("|")[2:-1]
    assert len(rows) == 5 and all(re.fullmatch(r"\s*[\d.]+\s*", cell) for cell in ema_cells)
    assert re.search(r"`LearningRateScheduler.step\(\)` with 10 groups: [\d.]+ us", report)
    assert re.search(r"`Optimizer.build\(\)`: 500 tensors [\d.]+ s, 1,000 tensors [\d.]+ s", report)
    assert re.search(r"Trainer loop \d+ us / iteration against a hand-written loop \d+ us", report)
