"""tools/test_net.py with the config a checkpoint stores (no --cfg), and its one-line error for the weights of
another model. The oracles: scikit-learn's split of the digits and torch's cross entropy for the evaluation,
torch's own `load_state_dict` for the keys that do not fit."""
import re

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from pet.config import get_cfg
from pet.engine.persistence.checkpointer import Checkpointer
from pet.models import build_model
from tests.tools.test_cli_errors import DEFAULT_CFG, test_net


def save_checkpoint(folder, *overrides):
    """A checkpoint of the digits config with `overrides`, as a run writes it (its config stored), holding
    random weights with the batch-norm statistics of random images; returns (path, model in eval mode)."""
    cfg = get_cfg()
    cfg.merge_from_file(DEFAULT_CFG)
    cfg.merge_from_list(list(overrides))
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # batch-norm statistics of a batch of images, as training leaves them
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # a cumulative average: one batch's statistics exactly
        model.train()(torch.rand(64, 3, 8, 8) * 2 - 1)
    folder.mkdir(parents=True, exist_ok=True)
    Checkpointer(str(folder), model=model, metadata={"config": cfg.dump()}).save("model_final", 1)
    return str(folder / "model_final.pth"), model.eval()


def run_test_net(capsys, argv):
    """test_net's exit code, stdout and stderr lines."""
    code = test_net.run(test_net.main, argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def expected_loss(model, seed, val_fraction=0.2):
    """The mean cross entropy of `model` on the digits' validation split, computed from scikit-learn directly."""
    digits = load_digits()
    _, val = train_test_split(range(len(digits.target)), test_size=val_fraction, random_state=seed,
                              stratify=digits.target)
    images = torch.as_tensor(digits.images[val], dtype=torch.float32) / 16.0 * 2.0 - 1.0
    images = images.unsqueeze(1).expand(-1, 3, -1, -1)
    with torch.no_grad():
        return nn.functional.cross_entropy(model(images), torch.as_tensor(digits.target[val])).item()


def printed(out):
    """The `name=value` results of test_net's last line."""
    return {name: float(value) for name, value in (item.split("=") for item in out.strip().splitlines()[-1].split())}


def test_without_cfg_the_checkpoint_s_own_config_is_evaluated_with_overrides_on_top(tmp_path, capsys):
    # SEED 3 picks another validation split than the --cfg file's SEED 0: only the stored config evaluates on it.
    path, model = save_checkpoint(tmp_path, "SEED", "3")
    code, out, err = run_test_net(capsys, ["--weights", path])
    assert code == 0, err
    assert f"Config: the one stored in {path} (MODEL.NAME = resnet18, DATA.DATASET = digits)" in out
    assert printed(out)["val/loss"] == pytest.approx(expected_loss(model, seed=3), abs=1e-4)
    assert expected_loss(model, seed=3) != pytest.approx(expected_loss(model, seed=0), abs=1e-3)  # tells them apart

    code, out, err = run_test_net(capsys, ["--weights", path, "DATA.VAL_FRACTION", "0.5"])  # an override applies
    assert code == 0, err
    assert printed(out)["val/loss"] == pytest.approx(expected_loss(model, seed=3, val_fraction=0.5), abs=1e-4)


def test_a_plain_state_dict_without_cfg_is_one_error_line(tmp_path, capsys):
    _, model = save_checkpoint(tmp_path)
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    code, out, err = run_test_net(capsys, ["--weights", str(tmp_path / "plain.pth")])
    assert code == 2 and err == [f"error: --weights {tmp_path / 'plain.pth'} stores no config (a plain state dict, or "
                                 "a file that is not a checkpoint of this project): give the config it was trained "
                                 "with, --cfg FILE (see --help)"]
    code, out, err = run_test_net(capsys, ["--weights", str(tmp_path / "none.pth")])
    assert code == 2 and err == [f"error: checkpoint {tmp_path / 'none.pth'} does not exist"]


def test_a_stored_config_with_an_unknown_key_names_the_checkpoint(tmp_path, capsys):
    torch.save({"model": {"w": torch.ones(1)}, "config": "MODEL:\n  NAME: resnet18\n  DEPTH: 3\n"},
               tmp_path / "old.pth")
    code, _, err = run_test_net(capsys, ["--weights", str(tmp_path / "old.pth")])
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: the config stored in {tmp_path / 'old.pth'}: unknown config key MODEL.DEPTH"), err


@pytest.mark.parametrize("overrides, trained, configured", [
    (["MODEL.NAME", "resnet34"], "MODEL.NAME = 'resnet34', MODEL.NUM_CLASSES = 10",
     "MODEL.NAME = 'resnet18', MODEL.NUM_CLASSES = 10"),
    (["MODEL.NUM_CLASSES", "12"], "MODEL.NAME = 'resnet18', MODEL.NUM_CLASSES = 12",
     "MODEL.NAME = 'resnet18', MODEL.NUM_CLASSES = 10"),
    (["MODEL.SMALL_INPUT", "False"], "MODEL.NAME = 'resnet18', MODEL.NUM_CLASSES = 10, MODEL.SMALL_INPUT = False",
     "MODEL.NAME = 'resnet18', MODEL.NUM_CLASSES = 10, MODEL.SMALL_INPUT = True"),
])
def test_the_weights_of_another_model_name_the_model_the_checkpoint_was_trained_as(tmp_path, capsys, overrides,
                                                                                    trained, configured):
    path, _ = save_checkpoint(tmp_path, *overrides)
    code, _, err = run_test_net(capsys, ["--cfg", DEFAULT_CFG, "--weights", path])
    assert code == 2 and err == [f"error: {path} holds a model trained with {trained}; the config has {configured}: "
                                 "give the config it was trained with (tools/test_net.py uses the one the checkpoint "
                                 "stores when --cfg is left out)"]


def test_a_plain_state_dict_of_another_model_is_summed_up_in_whole_key_names(tmp_path, capsys):
    cfg = get_cfg()
    cfg.merge_from_file(DEFAULT_CFG)
    resnet18 = build_model(cfg)
    for name, overrides in (("resnet34", ["MODEL.NAME", "resnet34"]), ("classes12", ["MODEL.NUM_CLASSES", "12"])):
        _, other = save_checkpoint(tmp_path / name, *overrides)
        torch.save(other.state_dict(), tmp_path / f"{name}.pth")
    # torch's own account of the resnet34 weights: extra blocks only (resnet18's are a subset).
    result = resnet18.load_state_dict(torch.load(tmp_path / "resnet34.pth", weights_only=True), strict=False)
    assert not result.missing_keys
    unexpected = result.unexpected_keys
    code, _, err = run_test_net(capsys, ["--cfg", DEFAULT_CFG, "--weights", str(tmp_path / "resnet34.pth")])
    assert code == 2 and err == [f"error: {tmp_path / 'resnet34.pth'} holds the weights of another model than "
                                 f"MODEL.NAME = 'resnet18': {len(unexpected)} unexpected ({', '.join(unexpected[:3])}, "
                                 "...)"]
    twelve = torch.load(tmp_path / "classes12.pth", weights_only=True)
    ten = resnet18.state_dict()
    code, _, err = run_test_net(capsys, ["--cfg", DEFAULT_CFG, "--weights", str(tmp_path / "classes12.pth")])
    shapes = ", ".join(f"{key} {list(twelve[key].shape)} for {list(ten[key].shape)}" for key in ("head.weight",
                                                                                              "head.bias"))
    assert code == 2 and err == [f"error: {tmp_path / 'classes12.pth'} holds the weights of another model than "
                                 f"MODEL.NAME = 'resnet18': 2 of another shape ({shapes})"]
    assert not re.search(r"\.\.\.[a-z_.]", err[0])  # no key cut in the middle
