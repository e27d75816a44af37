"""tools/bench_data.py times the loader and the update and says which is the bottleneck (rates are not asserted:
they are no test; the verdict's logic is, on given rates)."""
import pytest

from pet.engine.runs.cli import CommandLineError
from tests.tools.test_cli_errors import DEFAULT_CFG, load_tool


def test_it_writes_a_row_per_worker_count_the_update_and_a_verdict(tmp_path):
    bench_data = load_tool("bench_data")
    out = tmp_path / "data.md"
    report = bench_data.main(["--cfg", DEFAULT_CFG, "--workers", "0", "--batches", "2", "--updates", "1", "--out",
                              str(out), "OUTPUT_DIR", str(tmp_path / "never")])
    assert out.read_text() == report
    lines = report.splitlines()
    assert lines[4].startswith("| loader, DATA.NUM_WORKERS 0 | ") and lines[5].startswith("| model update | ")
    assert lines[-1].startswith(("the loader is the bottleneck", "the model is the bottleneck"))
    assert not (tmp_path / "never").exists()  # nothing of a run is written


def test_the_verdict_names_the_slower_side_and_the_fewest_workers_that_keep_up():
    report = load_tool("bench_data").report
    assert report("x.yaml", {0: 100.0, 2: 300.0}, 250.0).splitlines()[-1] == (
        "the model is the bottleneck: DATA.NUM_WORKERS 2 already gives 300 images/s, the update takes 250")
    assert report("x.yaml", {0: 100.0, 2: 180.0}, 250.0).splitlines()[-1].startswith(
        "the loader is the bottleneck: 180 images/s at best (2 workers) against 250 for the update")


@pytest.mark.parametrize("args, message", [(["--workers", "-1"], "--workers"), (["--batches", "0"], "--batches")])
def test_bad_counts_are_refused_before_anything_runs(args, message):
    with pytest.raises(CommandLineError, match=message):
        load_tool("bench_data").main(["--cfg", DEFAULT_CFG, *args])
