"""Checkpoint folders of sharded runs (torch's Distributed Checkpoint) in real processes: saved by 2 processes and
loaded by 1, saved by 1 and loaded by 2, every parameter and Adam moment equal to the full tensors that were saved
(gathered by torch's own `get_*_state_dict(full_state_dict=True)`), the groups' hyperparameters taken from the
config, and optimizer state of other param groups refused before anything is loaded."""
import os

import pytest
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

from pet.engine.persistence.checkpointer import Checkpointer, StateDictGroup
from pet.engine.persistence.sharded import merge, split_tensors
from pet.errors import CheckpointError
from pet.solver import Optimizer
from tests.engine.distributed.test_fsdp import give_gradients, sharded_and_full, solver_cfg
from tests.engine.distributed_processes import run_in_processes

FULL = StateDictOptions(full_state_dict=True)


def build(lr: float, bias_lr_factor: float = 1.0):
    model, full = sharded_and_full(seed=int(lr * 100))  # other initial weights than the saved run's
    cfg = solver_cfg("ADAMW", "full_model", 2.0)
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", lr, "SOLVER.OPTIMIZER.BIAS_LR_FACTOR", bias_lr_factor])
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    return model, full, optimizer


def checkpointer(folder: str, model, optimizer) -> Checkpointer:
    return Checkpointer(folder, enabled=torch.distributed.get_rank() == 0, sharded=True, model=model,
                        optimizers=StateDictGroup({"": optimizer}))


def full_state(model, optimizer) -> dict:
    return {"model": get_model_state_dict(model, options=FULL),
            "optimizer": get_optimizer_state_dict(model, optimizer, options=FULL)["state"]}


def assert_equal_states(got: dict, expected: dict) -> None:
    assert got["model"].keys() == expected["model"].keys()
    for name, tensor in expected["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    assert got["optimizer"].keys() == expected["optimizer"].keys()
    for name, state in expected["optimizer"].items():
        for key, tensor in state.items():
            assert torch.equal(got["optimizer"][name][key], tensor), (name, key)


def train_and_save(rank: int, world_size: int, folder: str) -> None:
    model, full, optimizer = build(lr=0.1)
    for seed in (1, 2):
        give_gradients(model, full, seed)
        optimizer.step()
    checkpointer(folder, model, optimizer).save("model_0000002", 2)
    state = full_state(model, optimizer)
    if rank == 0:
        torch.save(state, os.path.join(folder, f"full-{world_size}.pt"))


def load_and_compare(rank: int, world_size: int, folder: str, saved_by: int) -> None:
    model, full, optimizer = build(lr=0.3)
    checkpointer(folder, model, optimizer).load(os.path.join(folder, "model_0000002"))
    expected = torch.load(os.path.join(folder, f"full-{saved_by}.pt"), weights_only=True)
    assert_equal_states(full_state(model, optimizer), expected)
    assert [group["lr"] for group in optimizer.param_groups] == [0.3] * len(optimizer.param_groups)  # the config's
    give_gradients(model, full, seed=3)
    optimizer.step()  # and training goes on


def regrouped_is_refused(rank: int, world_size: int, folder: str) -> None:
    model, full, optimizer = build(lr=0.3, bias_lr_factor=2.0)  # biases get a group of their own
    before = full_state(model, optimizer)
    with pytest.raises(CheckpointError, match=r"holds optimizer state for param groups \[weight\+bias \(4 tensors\)\] "
                                              r"but the optimizer has \[weight \(2 tensors\), bias \(2 tensors\)\]"):
        checkpointer(folder, model, optimizer).load(os.path.join(folder, "model_0000002"))
    assert_equal_states(full_state(model, optimizer), before)  # nothing was loaded


@pytest.mark.slow  # real processes
@pytest.mark.parametrize("saved_by, loaded_by", [(2, 1), (1, 2), (2, 2)])
def test_a_checkpoint_folder_loads_exactly_at_another_number_of_processes(tmp_path, saved_by, loaded_by):
    folder = str(tmp_path / "run")
    os.makedirs(folder)
    run_in_processes(train_and_save, saved_by, tmp_path, folder)
    assert sorted(os.listdir(os.path.join(folder, "model_0000002")))[-1] == "extra.pth"
    assert open(os.path.join(folder, "last_checkpoint")).read() == "model_0000002\n"
    run_in_processes(load_and_compare, loaded_by, tmp_path, folder, saved_by)


@pytest.mark.slow
def test_optimizer_state_of_other_param_groups_is_refused(tmp_path):
    folder = str(tmp_path / "run")
    os.makedirs(folder)
    run_in_processes(train_and_save, 2, tmp_path, folder)
    run_in_processes(regrouped_is_refused, 2, tmp_path, folder)


def test_split_tensors_and_merge_are_inverse():
    w, step, rng = torch.ones(2), torch.tensor(3.0), [{"torch": torch.zeros(3, dtype=torch.uint8)}]
    groups = [{"lr": 0.1, "params": ["w"]}]
    tree = {"model": {"w": w}, "optimizers": {"": {"state": {"w": {"step": step}}, "param_groups": groups}},
            "iteration": 7, "rng": rng, "empty": {}}
    tensors, rest = split_tensors(tree)
    assert tensors == {"model": {"w": w}, "optimizers": {"": {"state": {"w": {"step": step}}}}}  # by identity
    assert rest == {"model": {}, "optimizers": {"": {"state": {"w": {}}, "param_groups": groups}}, "iteration": 7,
                    "rng": rng, "empty": {}}  # tensors in lists stay
    merged = merge(tensors, rest)
    assert merged["model"]["w"] is w and merged["optimizers"][""]["state"]["w"]["step"] is step
    assert merged["optimizers"][""]["param_groups"] is groups and merged["rng"] is rng and merged["iteration"] == 7
    assert merged.keys() == tree.keys() and merged["empty"] == {}


class _RunsACommand:
    """What an attacker pickles into `.metadata`: unpickling it calls os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def write_plain_folder(folder: str) -> None:
    """A checkpoint folder as an FSDP run of one process writes it: DCP's files and extra.pth."""
    import warnings

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(2)}}, checkpoint_id=folder,
                 no_dist=True)
    torch.save({"model": {}, "iteration": 3, "rng": []}, os.path.join(folder, "extra.pth"))


def every_reader(folder: str):
    """Each way a checkpoint folder is read: test_net / MODEL.WEIGHTS / export_weights, and a resume."""
    from pet.engine.persistence.checkpointer import checkpoint_weights, read_checkpoint
    from pet.engine.persistence.sharded import read_section

    return [lambda: read_section(folder, "model"), lambda: checkpoint_weights(folder),
            lambda: checkpoint_weights(folder, project_only=True), lambda: read_checkpoint(folder)]


def test_a_plain_folder_reads_through_the_safe_reader(tmp_path):
    from pet.engine.persistence.checkpointer import checkpoint_weights

    folder = str(tmp_path / "model_final")
    write_plain_folder(folder)
    weights = checkpoint_weights(folder)
    assert torch.equal(weights["w"], torch.arange(6.0).view(2, 3)) and torch.equal(weights["b"], torch.ones(2))


def test_a_crafted_metadata_file_runs_no_code(tmp_path):
    import pickle

    folder, marker = str(tmp_path / "model_final"), tmp_path / "owned"
    write_plain_folder(folder)
    with open(os.path.join(folder, ".metadata"), "wb") as f:
        pickle.dump(_RunsACommand(f"touch {marker}"), f)
    for read in every_reader(folder):
        with pytest.raises(CheckpointError, match=r"\.metadata cannot be loaded safely: it names posix\.system"):
            read()
    assert not marker.exists()


def test_metadata_that_declares_pickled_bytes_or_points_outside_is_refused(tmp_path):
    import pickle

    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    from pet.engine.persistence.sharded import read_metadata

    folder = str(tmp_path / "model_final")
    write_plain_folder(folder)
    path = os.path.join(folder, ".metadata")
    original = open(path, "rb").read()
    metadata = pickle.loads(original)
    metadata.state_dict_metadata["model.w"] = BytesStorageMetadata()  # DCP would torch.load it with weights_only=False
    open(path, "wb").write(pickle.dumps(metadata))
    with pytest.raises(CheckpointError, match=r"model\.w is not a tensor"):
        read_metadata(folder)
    metadata = pickle.loads(original)
    for info in metadata.storage_data.values():
        info.relative_path = "../outside.distcp"
    open(path, "wb").write(pickle.dumps(metadata))
    with pytest.raises(CheckpointError, match=r"points to '\.\./outside\.distcp', not a file of the folder"):
        read_metadata(folder)


@pytest.mark.parametrize("victim", [".metadata", "__0_0.distcp"])
def test_a_folder_cut_short_by_a_crash_fails_when_read(tmp_path, victim):
    folder = str(tmp_path / "model_final")
    write_plain_folder(folder)
    path = os.path.join(folder, victim)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    for read in every_reader(folder):
        with pytest.raises(CheckpointError, match="cannot be loaded safely|shorter than its metadata says"):
            read()


@pytest.mark.parametrize("size", [[10 ** 6] * 3, [-5], ["a", "b"]])
def test_metadata_describing_an_impossible_tensor_is_refused_before_anything_is_allocated(tmp_path, size):
    import pickle

    from pet.engine.persistence.sharded import read_metadata

    folder = str(tmp_path / "model_final")
    write_plain_folder(folder)
    path = os.path.join(folder, ".metadata")
    metadata = pickle.loads(open(path, "rb").read())
    metadata.state_dict_metadata["model.w"].size = torch.Size(size) if all(isinstance(n, int) and n >= 0
                                                                             for n in size) else size
    open(path, "wb").write(pickle.dumps(metadata))
    with pytest.raises(CheckpointError, match=r"the tensor 'model\.w' is described with a shape or dtype"):
        read_metadata(folder)
