"""tools/export_weights.py --format: what each format writes loads where it says, and computes what the
checkpoint's model computes. The oracles are torch and torchvision: `torchvision.models.<name>` loading the state
dict, `torch.jit.load`, onnxruntime (when installed), each compared with the model rebuilt from the checkpoint."""
import os
import re
import sys

import pytest
import torch
import torchvision
from torch import nn

from pet.config import get_cfg
from pet.engine.persistence.checkpointer import Checkpointer
from pet.models import build_model, model_task
from tests.engine.test_user_builders import USER
from tests.tools.test_cli_errors import DEFAULT_CFG, load_tool
from tests.toy_detection import tiny_cfg

export = load_tool("export_weights")

# A classifier torchvision builds as is: ImageNet's stem, 32-pixel images.
PLAIN = ["MODEL.SMALL_INPUT", "False", "DATA.IMAGE_SIZE", "32"]


def make_checkpoint(folder, cfg, adjust=None):
    """A checkpoint of `cfg`'s model as a run writes it (its config stored), a classifier with the batch-norm
    statistics of random images (so that a buffer left out or misplaced shows), then `adjust(model)`; returns
    (path, the model in eval mode)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    batch_norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    with torch.no_grad():
        if batch_norms and model_task(cfg.MODEL.NAME) == "classification":
            for module in batch_norms:
                module.reset_running_stats()
                module.momentum = None  # a cumulative average: one batch's statistics exactly
            side = cfg.DATA.IMAGE_SIZE or 8
            model.train()(torch.rand(8, 3, side, side) * 2 - 1)
        if adjust is not None:
            adjust(model)
    folder.mkdir(parents=True, exist_ok=True)
    Checkpointer(str(folder), model=model, metadata={"config": cfg.dump()}).save("model_final", 1)
    return str(folder / "model_final.pth"), model.eval()


def digits_cfg(*overrides):
    cfg = get_cfg()
    cfg.merge_from_file(DEFAULT_CFG)
    cfg.merge_from_list(list(overrides))
    return cfg


def run_export(capsys, *argv):
    """export_weights' exit code, stdout and stderr lines."""
    code = export.run(export.main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])  # the head under `fc`, under `classifier`
def test_torchvision_format_loads_into_torchvision_s_own_model_and_computes_the_same(tmp_path, capsys, name):
    path, model = make_checkpoint(tmp_path, digits_cfg(*PLAIN, "MODEL.NAME", name))
    out = tmp_path / "tv.pth"
    code, printed, err = run_export(capsys, "--weights", path, "--out", str(out), "--format", "torchvision")
    assert code == 0, err
    reference = torchvision.models.get_model(name, weights=None, num_classes=10)
    reference.load_state_dict(torch.load(out, weights_only=True))  # strict: every name and shape torchvision's
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reference.eval()(images), model(images))
    assert f"for torchvision.models.{name}(num_classes=10).load_state_dict(torch.load('{out}', weights_only=True))" \
        in printed


def test_the_pet_format_is_the_default_and_keeps_the_project_s_names(tmp_path, capsys):
    path, model = make_checkpoint(tmp_path, digits_cfg())
    code, _, err = run_export(capsys, "--weights", path, "--out", str(tmp_path / "w.pth"))
    assert code == 0, err
    written, expected = torch.load(tmp_path / "w.pth", weights_only=True), model.state_dict()
    assert list(written) == list(expected) and all(torch.equal(written[k], expected[k]) for k in expected)


@pytest.mark.parametrize("cfg, message", [
    (lambda: digits_cfg(), r"--format torchvision: the checkpoint's run had MODEL\.SMALL_INPUT True, which gave "
                           r"resnet18 a stride-1 stem .* so torchvision's resnet18 would differ; export the whole "
                           r"model with --format torchscript or onnx"),
    (lambda: digits_cfg(*PLAIN, "MODEL.NORM", "GN"), r"--format torchvision: the checkpoint's run had MODEL\.NORM = "
                                                     r"'GN', which replaced the BatchNorm2d layers of resnet18"),
    (lambda: tiny_cfg("unused"), r"--format torchvision writes the state dict of a torchvision classifier, and "
                                 r"MODEL\.NAME = 'fcos_resnet18_fpn' is a detector: use --format torchscript or pet"),
    (lambda: digits_cfg(*USER), r"MODEL\.NAME = 'tests\.user_builders:tiny_net' is your own model"),
])
def test_torchvision_format_refuses_what_torchvision_would_build_otherwise(tmp_path, capsys, cfg, message):
    path, _ = make_checkpoint(tmp_path / "run", cfg())
    code, _, err = run_export(capsys, "--weights", path, "--out", str(tmp_path / "tv.pth"), "--format", "torchvision")
    assert code == 2 and len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / "tv.pth").exists()


def test_torchscript_format_loads_with_torch_jit_and_computes_the_same(tmp_path, capsys):
    path, model = make_checkpoint(tmp_path, digits_cfg())  # the stride-1 stem: the whole model goes
    out = tmp_path / "model.pt"
    code, printed, err = run_export(capsys, "--weights", path, "--out", str(out), "--format", "torchscript")
    assert code == 0, err
    assert f"Wrote {out}: resnet18, scripted; load it with torch.jit.load('{out}')" in printed
    loaded = torch.jit.load(str(out))
    images = torch.rand(5, 3, 8, 8) * 2 - 1  # another batch size than any example the tool used
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_torchscript_format_traces_a_model_that_does_not_script(tmp_path, capsys, monkeypatch):
    path, model = make_checkpoint(tmp_path, digits_cfg())

    def refuse(module):
        raise RuntimeError("Python builtin <built-in function id> is currently not supported in Torchscript")
    monkeypatch.setattr(torch.jit, "script", refuse)
    out = tmp_path / "model.pt"
    code, printed, err = run_export(capsys, "--weights", path, "--out", str(out), "--format", "torchscript")
    assert code == 0, err
    assert "resnet18, traced on a batch of shape (2, 3, 8, 8)" in printed
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(images), model(images))


def test_torchscript_format_scripts_a_detector(tmp_path, capsys):
    def confident(model):  # boxes to compare, not none
        model.head.classification_head.cls_logits.bias.fill_(4.0)
    path, model = make_checkpoint(tmp_path / "run", tiny_cfg("unused"), confident)
    out = tmp_path / "detector.pt"
    code, _, err = run_export(capsys, "--weights", path, "--out", str(out), "--format", "torchscript")
    assert code == 0, err
    images = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        expected = model(images)[0]
        losses, detections = torch.jit.load(str(out))(images)  # TorchScript's torchvision detectors: both
    assert losses == {} and len(expected["boxes"]) > 0
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(detections[0][key], expected[key])


def test_onnx_format_without_its_packages_is_one_error_line_before_any_work(tmp_path, capsys, monkeypatch):
    for module in ("onnx", "onnxscript"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    # The checkpoint does not even exist: the packages are checked first.
    code, _, err = run_export(capsys, "--weights", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "m.onnx"),
                              "--format", "onnx")
    assert code == 2 and err == ["error: --format onnx needs the package onnx, which is not installed: pip install "
                                 "-e .[onnx] (see --help)"]
    assert os.listdir(tmp_path) == []


def test_onnx_format_refuses_a_detector(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "check_onnx_installed", lambda: None)  # the refusal comes whether or not installed
    path, _ = make_checkpoint(tmp_path / "run", tiny_cfg("unused"))
    code, _, err = run_export(capsys, "--weights", path, "--out", str(tmp_path / "m.onnx"), "--format", "onnx")
    assert code == 2 and err == ["error: --format onnx: MODEL.NAME = 'fcos_resnet18_fpn' is a detector, whose "
                                 "data-dependent box post-processing torch.onnx's exporter cannot capture; use "
                                 "--format torchscript (see --help)"]
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_format_runs_in_onnxruntime_and_computes_the_same(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    path, model = make_checkpoint(tmp_path, digits_cfg())
    out = tmp_path / "model.onnx"
    code, printed, err = run_export(capsys, "--weights", path, "--out", str(out), "--format", "onnx")
    assert code == 0, err
    assert "input 'images' of shape (batch, 3, 8, 8), output 'logits'" in printed
    session = onnxruntime.InferenceSession(str(out))
    images = torch.rand(5, 3, 8, 8) * 2 - 1  # the batch size is dynamic
    (logits,) = session.run(["logits"], {"images": images.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), model(images), rtol=1e-4, atol=1e-5)
