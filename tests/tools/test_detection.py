"""Detection end to end on the generated shapes: train_net trains FCOS a few updates with checkpoints, a resume
from a checkpoint ends exactly as the uninterrupted run, test_net evaluates the checkpoint with COCO mAP, and
show_detections draws it."""
import os
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from pet.config import ConfigError
from pet.data.coco import CocoDetection
from pet.data.shapes import shapes_paths
from tests.tools.conftest import DEFAULT_CFG, TEST_NET, TRAIN_NET, environment
from tests.tools.test_train_net import final_weights, metrics
from tests.toy_detection import SHAPES_CFG, make_tiny_shapes, tiny_overrides

pytestmark = pytest.mark.slow  # end-to-end: real processes (make test-fast skips them)

LOSSES = {"classification", "bbox_regression", "bbox_ctrness"}  # FCOS's own loss names


def train_command(data_root, output_dir, *extra):
    return [sys.executable, TRAIN_NET, "--cfg", SHAPES_CFG, *tiny_overrides(data_root, output_dir), *extra]


@pytest.fixture(scope="module")
def detection_run(shapes_root, tmp_path_factory):
    """One uninterrupted tiny run: (output folder, completed process)."""
    output_dir = tmp_path_factory.mktemp("shapes_run")
    result = subprocess.run(train_command(shapes_root, output_dir), capture_output=True, text=True,
                            env=environment(), timeout=600)
    assert result.returncode == 0, result.stderr
    return output_dir, result


def test_a_detector_trains_logs_each_loss_and_is_evaluated(detection_run):
    output_dir, result = detection_run
    rows = metrics(output_dir)
    assert [row["iteration"] for row in rows] == list(range(6))
    for row in rows:  # every loss of the model's dict is logged, and the total is their sum
        assert LOSSES <= set(row)
        assert row["loss"] == pytest.approx(sum(row[name] for name in LOSSES), rel=1e-6)
    final = rows[-1]
    assert {"val/mAP", "val/AP50", "val/AP75", "val/AP-circle", "val/AP-square", "val/AP-triangle"} <= set(final)
    assert 0.0 <= final["val/mAP"] <= final["val/AP50"] <= 100.0
    assert sorted(n for n in os.listdir(output_dir) if n.endswith(".pth")) == [
        "model_0000002.pth", "model_0000004.pth", "model_final.pth"]
    assert "Evaluation at iteration 5: val/mAP" in result.stdout
    report = result.stdout[result.stdout.index("group      tensors"):result.stdout.index("Running with")]
    assert "weight" in report and "norm+bias" in report


def test_resuming_from_a_checkpoint_ends_exactly_as_the_uninterrupted_run(detection_run, shapes_root, tmp_path,
                                                                            run_tool):
    reference = detection_run[0]
    resumed = tmp_path / "resumed"
    # A crash right after the checkpoint of iteration 2: the later files never got written.
    shutil.copytree(reference, resumed)
    for name in ("model_0000004.pth", "model_final.pth"):
        os.remove(resumed / name)
    (resumed / "last_checkpoint").write_text("model_0000002.pth\n")
    result = run_tool(train_command(shapes_root, resumed, "--resume"), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Starting training at iteration 2; the last is 5" in result.stdout
    assert metrics(resumed) == metrics(reference)  # losses, lrs and the final mAP, row by row
    expected, got = final_weights(reference), final_weights(resumed)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_test_net_reports_the_mAP_of_the_checkpoint(detection_run, shapes_root, run_tool):
    output_dir = detection_run[0]
    result = run_tool([sys.executable, TEST_NET, "--cfg", SHAPES_CFG, "--weights",
                       str(output_dir / "model_final.pth"), *tiny_overrides(shapes_root, output_dir)])
    assert result.returncode == 0, result.stderr
    printed = dict(item.split("=") for item in result.stdout.strip().splitlines()[-1].split())
    assert float(printed["val/mAP"]) == pytest.approx(metrics(output_dir)[-1]["val/mAP"], abs=1e-4)


def test_show_detections_draws_the_ground_truth_and_predictions(detection_run, shapes_root, tmp_path):
    from tests.tools.test_cli_errors import load_tool

    output_dir, out = detection_run[0], tmp_path / "detections.png"
    show = load_tool("show_detections")
    overrides = tiny_overrides(shapes_root, output_dir)
    # No score of a 6-iteration detector reaches 1, so no prediction is drawn and the ground truth's white outline
    # is what lies on each box corner.
    show.main(["--cfg", SHAPES_CFG, "--weights", str(output_dir / "model_final.pth"), "--out", str(out),
               "--images", "3", "--score", "1", "--scale", "2", *overrides])
    with Image.open(out) as image:
        pixels = image.convert("RGB")
        assert image.size == (3 * (2 * 64 + 4) + 4, 2 * 64 + 2 * 4)  # one row of 3, 4-pixel padding
    dataset = CocoDetection(*shapes_paths(make_tiny_shapes(shapes_root), "val"))
    for column in range(3):
        for x1, y1, x2, y2 in dataset[column][1]["boxes"].tolist():
            corner = (4 + column * (2 * 64 + 4) + int(2 * x1), 4 + int(2 * y1))
            assert pixels.getpixel(corner) == (255, 255, 255)
    show.main(["--cfg", SHAPES_CFG, "--weights", str(output_dir / "model_final.pth"), "--out", str(out), *overrides])
    with pytest.raises(ConfigError, match="MODEL.NAME = 'resnet18' is not a detector"):
        show.main(["--cfg", DEFAULT_CFG, "--weights", "x.pth"])



KNOBS = {"channels_last": ["MODEL.CHANNELS_LAST", "True"], "compile": ["TRAIN.COMPILE", "True"]}


def test_the_speed_knobs_change_the_detector_s_training_only_by_rounding(shapes_root, tmp_path, monkeypatch, capsys):
    """3 updates of FCOS with each knob against 3 eager ones, losses row by row and the weights. Compile uses
    torch's `aot_eager` backend here (dynamo's capture, its graph breaks at the detector's Python and
    data-dependent code, and AOT autograd, without inductor's minutes of code generation on a CPU); images of
    another size make dynamo compile again, after which it marks their sizes dynamic."""
    from tests.tools.test_cli_errors import load_tool

    monkeypatch.setattr("pet.models.speed.DEFAULT_BACKEND", "aot_eager")
    train_net = load_tool("train_net")

    def train(name, *knob):
        args = ["--cfg", SHAPES_CFG, *tiny_overrides(shapes_root, tmp_path / name), "SOLVER.SCHEDULER.TOTAL_ITERS",
                "3", *knob]
        assert train_net.run(train_net.main, args) == 0
        assert "runs eagerly" not in capsys.readouterr().out  # compiled indeed, not fallen back
        return metrics(tmp_path / name), final_weights(tmp_path / name)

    eager_rows, eager = train("eager")
    for knob, overrides in KNOBS.items():
        rows, weights = train(knob, *overrides)
        for ours, theirs in zip(rows, eager_rows, strict=True):
            for name in LOSSES | {"loss"}:
                assert ours[name] == pytest.approx(theirs[name], rel=1e-4), (knob, ours["iteration"], name)
        assert list(weights) == list(eager)
        for name, tensor in eager.items():
            torch.testing.assert_close(weights[name].float(), tensor.float(), rtol=1e-3, atol=1e-4,
                                       msg=f"{knob} {name}")
