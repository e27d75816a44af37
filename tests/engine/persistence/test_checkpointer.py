"""Checkpoints: complete or absent after a crash, the last N kept, weights_only, group checks, RNG states."""
import os
import pickle
import random
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from pet.config import get_cfg
from pet.engine.persistence.checkpointer import CheckpointError, Checkpointer, read_checkpoint
from pet.solver import Optimizer
from tests.toy_model import toy_model


def test_save_and_load_round_trip(tmp_path):
    model, other = nn.Linear(3, 2), nn.Linear(3, 2)
    Checkpointer(str(tmp_path), model=model).save("model_0000010", iteration=10)
    data = Checkpointer(str(tmp_path), model=other).load(str(tmp_path / "model_0000010.pth"))
    assert data["iteration"] == 10
    assert torch.equal(model.weight, other.weight)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000010.pth\n"


def test_rng_states_are_restored(tmp_path):
    checkpointer = Checkpointer(str(tmp_path))
    torch.manual_seed(3)
    random.seed(3)
    checkpointer.save("model_0000001", iteration=1)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(99)
    random.seed(99)
    checkpointer.load(checkpointer.latest())
    got = (torch.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1]


def test_only_the_last_n_periodic_checkpoints_are_kept(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), keep=2, model=nn.Linear(1, 1))
    for it in (10, 20, 30, 40):
        checkpointer.save(f"model_{it:07d}", it)
    checkpointer.save("model_final", 50)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000030.pth", "model_0000040.pth",
                                            "model_final.pth"]
    assert checkpointer.latest() == str(tmp_path / "model_final.pth")


def test_a_disabled_checkpointer_writes_nothing(tmp_path):
    assert Checkpointer(str(tmp_path), enabled=False, model=nn.Linear(1, 1)).save("model_final", 1) is None
    assert os.listdir(tmp_path) == []


CRASH_DURING_SAVE = textwrap.dedent("""
    import os, signal, sys, torch
    from torch import nn
    from pet.engine.persistence.checkpointer import Checkpointer
    checkpointer = Checkpointer(sys.argv[1], model=nn.Linear(64, 64))
    checkpointer.save("model_0000001", 1)
    real_save = torch.save
    def dying_save(obj, f):
        real_save(obj, f)
        f.flush()
        f.truncate(f.tell() // 2)  # half of the new checkpoint is on disk...
        os.kill(os.getpid(), signal.SIGKILL)  # ...when the process dies
    torch.save = dying_save
    checkpointer.save("model_0000002", 2)
""")


@pytest.mark.slow
def test_a_checkpoint_is_never_half_written(tmp_path):
    result = subprocess.run([sys.executable, "-c", CRASH_DURING_SAVE, str(tmp_path)], capture_output=True)
    assert result.returncode == -9
    names = sorted(os.listdir(tmp_path))
    # The half-written file never took a checkpoint's name; the previous checkpoint is intact and still the latest.
    assert "model_0000002.pth" not in names
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth\n"
    assert read_checkpoint(str(tmp_path / "model_0000001.pth"))["iteration"] == 1


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_crafted_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": RunsCode()}, f, protocol=2)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} cannot be loaded safely"):
        read_checkpoint(str(path))


def test_a_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*nope\.pth does not exist"):
        read_checkpoint(str(tmp_path / "nope.pth"))


def test_optimizer_state_for_other_groups_is_refused_with_their_names(tmp_path):
    cfg = get_cfg()
    model = toy_model()
    Checkpointer(str(tmp_path), optimizer=Optimizer(model, cfg.SOLVER.OPTIMIZER).build()).save("model_final", 5)
    cfg.SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR = 0.5  # different grouping now
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    with pytest.raises(CheckpointError, match=r"param groups \[embed\+bias\+norm \(12 tensors\), weight \(2 tensors\)\]"
                                              r" but the optimizer has \[embed\+bias\+norm \(5 tensors\), "):
        Checkpointer(str(tmp_path), optimizer=optimizer).load(str(tmp_path / "model_final.pth"))


def test_a_full_disk_leaves_the_previous_checkpoint_intact_and_says_so(tmp_path, monkeypatch):
    import errno

    model = nn.Linear(64, 64)
    checkpointer = Checkpointer(str(tmp_path), model=model)
    checkpointer.save("model_0000001", 1)
    before = sorted(os.listdir(tmp_path))
    real_save = torch.save

    def disk_full(obj, f):
        real_save(obj, f)
        f.truncate(100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*model_0000002\.pth: No space left on "
                                              r"device; the previous checkpoint .*model_0000001\.pth is intact"):
        checkpointer.save("model_0000002", 2)
    assert sorted(os.listdir(tmp_path)) == before  # no half file, no temporary file left behind
    assert read_checkpoint(str(tmp_path / "model_0000001.pth"))["iteration"] == 1


def test_outputs_are_never_written_through_a_symbolic_link(tmp_path):
    from pet.engine.persistence.safe_files import safe_output_path
    from pet.engine.loop.writers import JSONWriter

    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").symlink_to(outside)
    with pytest.raises(CheckpointError, match=r"refusing to follow the symbolic link .*metrics\.json -> "):
        JSONWriter(safe_output_path(str(run), "metrics.json"))
    # A checkpoint name that is a link is replaced by the new file; the link's target is untouched.
    (run / "model_final.pth").symlink_to(outside)
    Checkpointer(str(run), model=nn.Linear(1, 1)).save("model_final", 3)
    assert outside.read_text() == "precious" and not os.path.islink(run / "model_final.pth")


@pytest.mark.parametrize("marker", ["../outside.pth\n", "/etc/passwd\n", "sub/model.pth\n"])
def test_last_checkpoint_may_only_name_a_file_of_the_folder(tmp_path, marker):
    (tmp_path / "last_checkpoint").write_text(marker)
    with pytest.raises(CheckpointError, match=r"names .* which is not a file in"):
        Checkpointer(str(tmp_path)).latest()


def test_a_checkpoint_that_is_a_link_is_not_loaded(tmp_path):
    real = tmp_path / "elsewhere.pth"
    torch.save({"iteration": 1}, real)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model_final.pth").symlink_to(real)
    (tmp_path / "run" / "last_checkpoint").write_text("model_final.pth\n")
    with pytest.raises(CheckpointError, match="refusing to follow the symbolic link"):
        Checkpointer(str(tmp_path / "run")).latest()


def test_a_loaded_optimizer_takes_the_saved_state_and_keeps_the_configured_hyperparameters(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.BASE_LR", 0.05])
    model = toy_model()
    saved = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    saved.step()
    Checkpointer(str(tmp_path), optimizer=saved).save("model_final", 1)
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.2, "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.01,
                         "SOLVER.OPTIMIZER.BETAS", (0.8, 0.9)])
    resumed = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    Checkpointer(str(tmp_path), optimizer=resumed).load(str(tmp_path / "model_final.pth"))
    for group in resumed.param_groups:  # the config's values, not the checkpoint's
        assert group["lr"] == 0.2 and group["betas"] == (0.8, 0.9)
        assert group["weight_decay"] == (0.01 if group["name"] == "weight" else 0.0)
    for p in model.parameters():  # the moments and step counts are the checkpoint's
        for key, value in saved.state[p].items():
            assert torch.equal(resumed.state[p][key], value), key


def test_each_process_gets_its_own_rng_state_back(tmp_path, monkeypatch):
    import pet.engine.persistence.checkpointer as checkpoint

    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append(checkpoint.capture_rng_state())
    expected = torch.rand(3)  # the next draw of process 1's stream
    torch.save({"iteration": 3, "rng": states}, tmp_path / "model_final.pth")
    monkeypatch.setattr(checkpoint, "get_rank", lambda: 1)
    torch.manual_seed(99)
    Checkpointer(str(tmp_path)).load(str(tmp_path / "model_final.pth"))
    assert torch.equal(torch.rand(3), expected)


def test_pruning_orders_checkpoints_by_iteration_not_by_name(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), keep=2, model=nn.Linear(1, 1))
    for it in (9_999_990, 10_000_000, 10_000_010):  # "model_10000000" sorts before "model_9999990" as text
        checkpointer.save(f"model_{it:07d}", it)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_10000000.pth", "model_10000010.pth"]


def test_resume_falls_back_past_a_missing_or_broken_checkpoint(tmp_path, caplog):
    model = nn.Linear(2, 2)
    checkpointer = Checkpointer(str(tmp_path), keep=5, model=model)
    for it in (10, 20, 30):
        checkpointer.save(f"model_{it:07d}", it)
    (tmp_path / "model_0000030.pth").write_bytes(b"truncated")  # a disk fault, after the rename
    assert checkpointer.load_newest()["iteration"] == 20
    assert "Cannot resume from" in caplog.text and "model_0000030.pth" in caplog.text
    (tmp_path / "last_checkpoint").write_text("model_0000040.pth\n")  # names a file that is gone
    assert checkpointer.load_newest()["iteration"] == 20


def test_periodic_checkpoints_without_a_marker_still_resume(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), model=nn.Linear(2, 2))
    checkpointer.save("model_0000010", 10)
    checkpointer.save("model_0000020", 20)
    os.remove(tmp_path / "last_checkpoint")
    assert checkpointer.load_newest()["iteration"] == 20


def test_a_folder_whose_checkpoints_all_fail_is_an_error_not_a_fresh_start(tmp_path):
    (tmp_path / "last_checkpoint").write_text("model_0000040.pth\n")
    with pytest.raises(CheckpointError, match=r"no checkpoint in .* can be loaded .*remove the folder's "
                                              r"last_checkpoint to start over"):
        Checkpointer(str(tmp_path), model=nn.Linear(2, 2)).load_newest()
    assert Checkpointer(str(tmp_path / "empty")).load_newest() is None  # nothing there: a fresh start


def test_a_fifo_as_last_checkpoint_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "last_checkpoint")
    with pytest.raises(CheckpointError, match=r"last_checkpoint is a FIFO; a file was expected there"):
        Checkpointer(str(tmp_path)).load_newest()


@pytest.mark.parametrize("broken, message", [
    (lambda data: data.pop("rng"), r"has no state for \['rng'\]"),
    (lambda data: data.update(iteration="12"), r"holds the iteration '12', not an integer"),
    (lambda data: data.update(rng=[{"torch": torch.zeros(3)}]), r"holds RNG states that cannot be restored"),
])
def test_a_checkpoint_with_a_broken_field_names_it(tmp_path, broken, message):
    Checkpointer(str(tmp_path), model=nn.Linear(2, 2)).save("model_final", 3)
    data = read_checkpoint(str(tmp_path / "model_final.pth"))
    broken(data)
    torch.save(data, tmp_path / "model_final.pth")
    with pytest.raises(CheckpointError, match=message):
        Checkpointer(str(tmp_path), model=nn.Linear(2, 2)).load(str(tmp_path / "model_final.pth"))


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match=r"holds a Tensor, not a checkpoint of this project"):
        Checkpointer(str(tmp_path), model=nn.Linear(2, 2)).load(str(tmp_path / "weights.pth"))


def test_a_checkpoint_of_another_optimizer_is_refused_by_name(tmp_path):
    cfg = get_cfg()
    model = toy_model()
    Checkpointer(str(tmp_path), optimizer=Optimizer(model, cfg.SOLVER.OPTIMIZER).build()).save("model_final", 1)
    cfg.SOLVER.OPTIMIZER.TYPE = "ADAMW"
    adamw = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    with pytest.raises(CheckpointError, match=r"it holds the state of a SGD optimizer, but this run's is AdamW: "
                                              r"SOLVER\.OPTIMIZER\.TYPE changed"):
        Checkpointer(str(tmp_path), optimizer=adamw).load(str(tmp_path / "model_final.pth"))


def test_the_class_names_a_checkpoint_was_trained_on(tmp_path):
    from pet.engine.persistence.checkpointer import checkpoint_classes

    torch.save({"model": {"w": torch.ones(1)}, "classes": ["cat", "dog"]}, tmp_path / "run.pth")
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.pth")
    assert checkpoint_classes(str(tmp_path / "run.pth")) == ["cat", "dog"]
    assert checkpoint_classes(str(tmp_path / "plain.pth")) is None


def test_optimizer_state_of_other_parameters_names_them():
    from pet.engine.persistence.checkpointer import check_optimizer_groups

    optimizer = torch.optim.SGD([{"params": [("fc.weight", torch.nn.Parameter(torch.ones(2))),
                                             ("fc.bias", torch.nn.Parameter(torch.ones(1)))], "name": "all"}], lr=0.1)
    saved = {"param_groups": [{"name": "all", "param_names": ["fc.weight", "head.bias"], "params": [0, 1]}]}
    with pytest.raises(CheckpointError, match=r"param groups \[all \(2 tensors\)\] but the optimizer has \[all \(2 "
                                              r"tensors\)\]: .* parameters only in the checkpoint \['head.bias'\], only "
                                              r"in this run \['fc.bias'\]"):
        check_optimizer_groups(optimizer, saved)
    saved["param_groups"][0]["param_names"] = ["fc.weight", "fc.bias"]
    check_optimizer_groups(optimizer, saved)  # the same groups pass


def test_checkpoint_weights_take_the_model_or_the_average_and_refuse_what_export_cannot_use(tmp_path):
    from pet.engine.persistence.checkpointer import checkpoint_weights

    model, average = {"w": torch.ones(2)}, {"w": torch.zeros(2)}
    torch.save({"model": model, "ema": {"average": average, "updates": 3}, "iteration": 3}, tmp_path / "ema.pth")
    torch.save({"model": model, "iteration": 3}, tmp_path / "run.pth")
    torch.save(model, tmp_path / "plain.pth")
    assert torch.equal(checkpoint_weights(str(tmp_path / "ema.pth"))["w"], model["w"])
    assert torch.equal(checkpoint_weights(str(tmp_path / "ema.pth"), ema=True)["w"], average["w"])
    assert torch.equal(checkpoint_weights(str(tmp_path / "plain.pth"))["w"], model["w"])  # test_net takes these
    with pytest.raises(CheckpointError, match=r"plain.pth is not a checkpoint of this project"):
        checkpoint_weights(str(tmp_path / "plain.pth"), project_only=True)
    for name in ("run.pth", "plain.pth"):
        with pytest.raises(CheckpointError, match=rf"{name} holds no weight average"):
            checkpoint_weights(str(tmp_path / name), ema=True)


@pytest.mark.parametrize("where", ["weight", "running_var"])
def test_non_finite_weights_are_never_saved(tmp_path, where):
    from pet.errors import NonFiniteWeightsError

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    checkpointer = Checkpointer(str(tmp_path), model=model)
    checkpointer.save("model_0000001", 1)
    before = sorted(os.listdir(tmp_path))
    with torch.no_grad():
        (model[0].weight if where == "weight" else model[1].running_var)[1] = float("nan")
    name = "0.weight" if where == "weight" else "1.running_var"
    with pytest.raises(NonFiniteWeightsError, match=rf"inf or NaN at iteration 2 \({name}\), so model_0000002 was "
                                                    rf"not saved; the newest good checkpoint is .*model_0000001\.pth"):
        checkpointer.save("model_0000002", 2)
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth\n"
    with torch.no_grad():  # integer buffers (num_batches_tracked) are not checked, large finite values are fine
        (model[0].weight if where == "weight" else model[1].running_var)[1] = 3e38
    checkpointer.save("model_0000002", 2)


@pytest.mark.parametrize("broken, message", [
    (lambda data: data["scheduler"].pop("last_epoch"), r"\(scheduler\): the scheduler state has no 'last_epoch'"),
    (lambda data: data["scheduler"].update(last_epoch="7"), r"the scheduler state's 'last_epoch' is a str, not int"),
    (lambda data: data["optimizer"].pop("param_groups"), r"\(optimizer\): the optimizer state has no 'param_groups'"),
    (lambda data: data["model"].pop("weight"), r"\(model\): Error\(s\) in loading state_dict for Linear: Missing key"),
    (lambda data: data["rng"][0].update(torch=torch.zeros(3, dtype=torch.uint8)),
     r"RNG states that cannot be restored: its torch state is not a generator state"),
])
def test_a_checkpoint_that_does_not_fit_is_a_checkpoint_error_naming_the_part(tmp_path, broken, message):
    from pet.solver.schedules.lr_scheduler import ClosedFormScheduler
    from pet.solver.schedules.lr_schedule import LRSchedule

    def objects():
        model = nn.Linear(2, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return {"model": model, "optimizer": optimizer,
                "scheduler": ClosedFormScheduler(optimizer, LRSchedule("COSINE", 10, {"min_lr_factor": 0.0}))}

    Checkpointer(str(tmp_path), **objects()).save("model_final", 3)
    data = read_checkpoint(str(tmp_path / "model_final.pth"))
    broken(data)
    torch.save(data, tmp_path / "model_final.pth")
    with pytest.raises(CheckpointError, match=message):
        Checkpointer(str(tmp_path), **objects()).load(str(tmp_path / "model_final.pth"))


def test_a_bug_while_loading_keeps_its_traceback(tmp_path):
    class Buggy:
        def state_dict(self):
            return {"count": 1}

        def load_state_dict(self, state):
            return state["cuont"]  # a typo in the code, not a broken file

    Checkpointer(str(tmp_path), counter=Buggy()).save("model_final", 3)
    with pytest.raises(KeyError, match="cuont"):
        Checkpointer(str(tmp_path), counter=Buggy()).load(str(tmp_path / "model_final.pth"))


def test_numpy_random_state_is_restored(tmp_path):
    import numpy as np

    checkpointer = Checkpointer(str(tmp_path))
    np.random.seed(3)
    np.random.random(5)  # a position inside the stream, not only the seed
    checkpointer.save("model_0000001", iteration=1)
    expected = np.random.random(4)
    np.random.seed(99)
    checkpointer.load(checkpointer.latest())
    assert np.array_equal(np.random.random(4), expected)


@pytest.mark.parametrize("buffer", [torch.zeros(1), torch.zeros(1_000), torch.zeros(4, 1), "x", 5])
def test_optimizer_state_of_another_shape_is_refused_before_a_fused_kernel_reads_it(tmp_path, buffer):
    def objects():
        torch.manual_seed(0)
        model = nn.Linear(3, 4)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)

    model, optimizer = objects()
    model(torch.randn(2, 3)).sum().backward()
    optimizer.step()
    Checkpointer(str(tmp_path), model=model, optimizer=optimizer).save("model_final", 1)
    data = read_checkpoint(str(tmp_path / "model_final.pth"))
    data["optimizer"]["state"][0]["momentum_buffer"] = buffer
    torch.save(data, tmp_path / "model_final.pth")
    model, optimizer = objects()
    with pytest.raises(CheckpointError, match=r"does not fit this run \(optimizer\): the optimizer state's "
                                              r"momentum_buffer of parameter 0 (has the shape|is a)"):
        Checkpointer(str(tmp_path), model=model, optimizer=optimizer).load(str(tmp_path / "model_final.pth"))


def test_factored_second_moments_of_adafactor_are_a_state_that_fits(tmp_path):
    model = nn.Linear(3, 4)
    optimizer = torch.optim.Adafactor(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    optimizer.step()
    Checkpointer(str(tmp_path), optimizer=optimizer).save("model_final", 1)
    loaded = torch.optim.Adafactor(model.parameters())
    Checkpointer(str(tmp_path), optimizer=loaded).load(str(tmp_path / "model_final.pth"))
    assert torch.equal(loaded.state[model.weight]["row_var"], optimizer.state[model.weight]["row_var"])


def blocking_writes(monkeypatch):
    """Make every checkpoint write wait for the returned event before it starts."""
    import threading

    from pet.engine.persistence import checkpointer as module

    gate, real = threading.Event(), module.atomic_write

    def gated(path, write):
        if str(path).endswith(".pth"):
            assert gate.wait(30), "the write was never released"
        real(path, write)
    monkeypatch.setattr(module, "atomic_write", gated)
    return gate


def test_a_background_checkpoint_holds_the_state_of_the_moment_it_was_taken(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    taken = {name: t.clone() for name, t in model.state_dict().items()}
    momentum = optimizer.state[model.weight]["momentum_buffer"].clone()
    gate = blocking_writes(monkeypatch)
    checkpointer = Checkpointer(str(tmp_path), background=True, model=model, optimizer=optimizer)
    assert checkpointer.save("model_0000001", 1) == str(tmp_path / "model_0000001.pth")  # returns at once
    assert not (tmp_path / "model_0000001.pth").exists()
    for _ in range(3):  # training goes on while the write waits: the live tensors change in place
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
    gate.set()
    checkpointer.wait()
    saved = read_checkpoint(str(tmp_path / "model_0000001.pth"))
    assert all(torch.equal(saved["model"][name], t) for name, t in taken.items())
    assert torch.equal(saved["optimizer"]["state"][0]["momentum_buffer"], momentum)
    assert not torch.equal(model.weight, taken["weight"])
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth\n"


def test_a_checkpoint_saved_at_once_lands_after_the_one_in_flight(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    gate = blocking_writes(monkeypatch)
    checkpointer = Checkpointer(str(tmp_path), background=True, model=model)
    checkpointer.save("model_0000001", 1)
    gate.set()
    checkpointer.save("model_final", 2, wait=True)
    assert (tmp_path / "model_0000001.pth").exists() and (tmp_path / "model_final.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth\n"  # never the older one last


def test_a_background_write_that_fails_is_an_error_where_the_trainer_waits(tmp_path, monkeypatch):
    from pet.engine.persistence import checkpointer as module

    def full_disk(path, write):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(module, "atomic_write", full_disk)
    checkpointer = Checkpointer(str(tmp_path), background=True, model=nn.Linear(3, 2))
    checkpointer.save("model_0000001", 1)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*model_0000001\.pth: No space left"):
        checkpointer.wait()
    checkpointer.wait()  # said once
