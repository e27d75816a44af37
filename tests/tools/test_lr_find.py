"""tools/lr_find.py end to end on the default digits config: the picture and the curve in OUTPUT_DIR and nothing
else, the override line on stdout, and a short run at the suggested lr that learns the digits."""
import json
import os
import re
import sys

import pytest

from tests.tools.conftest import DEFAULT_CFG, ROOT, TRAIN_NET

LR_FIND = os.path.join(ROOT, "tools", "lr_find.py")


@pytest.mark.slow
def test_the_suggested_lr_trains_the_digits_in_200_updates(tmp_path, run_tool):
    sweep_dir, train_dir = tmp_path / "sweep", tmp_path / "train"
    result = run_tool([sys.executable, LR_FIND, "--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(sweep_dir)], timeout=900)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"SOLVER\.OPTIMIZER\.BASE_LR (\S+)", line)
    assert match, line
    assert sorted(os.listdir(sweep_dir)) == ["lr_find.json", "lr_find.png"]
    curve = json.loads((sweep_dir / "lr_find.json").read_text())
    assert curve["diverged"] and curve["suggested_lr"] < curve["stop_lr"]
    assert float(match.group(1)) == pytest.approx(curve["suggested_lr"], rel=1e-2)
    assert (sweep_dir / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    result = run_tool([sys.executable, TRAIN_NET, "--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(train_dir), *line.split(),
                       "SOLVER.SCHEDULER.TOTAL_ITERS", "200", "SOLVER.SCHEDULER.STEPS", "(160,)",
                       "TRAIN.EVAL_PERIOD", "0"], timeout=900)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(row) for row in (train_dir / "metrics.json").read_text().splitlines()]
    accuracy = [row["val/accuracy"] for row in rows if "val/accuracy" in row][-1]
    assert accuracy >= 90.0
