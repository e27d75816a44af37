"""One update on the device: the fused path reads nothing on the host, yet a non-finite loss or gradient still
skips the update and puts the buffers back (the device-side code that runs on GPUs, exercised on the CPU by
treating reads as costly)."""
import itertools

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from pet.config import get_cfg
from pet.data import ResumableBatchSampler
from pet.engine import classification_losses
from pet.engine.loop import trainer as trainer_module
from pet.engine.loop import update_step as update_step_module
from pet.engine.loop.trainer import Trainer
from pet.engine.loop.update_step import UpdateStep
from pet.solver import Optimizer
from pet.solver.units import SolverUnit
from tests.engine.loop.test_trainer import FailsAt, dataset


class HostReads:
    """Counts the reads of tensor values on the host (each one waits for the device there)."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kwargs):
                self.count += 1
                return _original(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, counted)


def bn_model(nan_loss_at=()):
    torch.manual_seed(0)
    return FailsAt(nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)),
                   nan_loss_at=nan_loss_at)


def unit(model, opt_type):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", opt_type, "SOLVER.OPTIMIZER.BASE_LR", 0.1])
    return SolverUnit.of(Optimizer(model, cfg.SOLVER.OPTIMIZER).build_guarded())


def batches(count=10):
    """The first batches of the usual stream, drawn beforehand (the sampler's own index lists are host reads)."""
    return iter(list(itertools.islice(DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 8, seed=5)),
                                      count)))


@pytest.mark.parametrize("opt_type, reads_per_update", [("SGD", 0), ("ADAMW", 0), ("RMSPROP", 1)])
def test_an_update_reads_nothing_on_the_host_with_fused_kernels(monkeypatch, opt_type, reads_per_update):
    monkeypatch.setattr(update_step_module, "reads_are_free", lambda device: False)
    model = bn_model(nan_loss_at=(3,))  # the third update's loss is NaN
    step = UpdateStep(model, classification_losses, [unit(model, opt_type)], torch.device("cpu"))
    stream = batches()
    step(stream, 0)  # the first update finds out which buffers move (a one-time read)
    step(stream, 1)
    reads = HostReads(monkeypatch)
    outcomes = [step(stream, 2), step(stream, 3)]
    assert reads.count == 2 * reads_per_update  # the host kernels (RMSprop's foreach) need the verdict there
    monkeypatch.undo()
    assert [float(o.skipped) for o in outcomes] == [1.0, 0.0]
    assert torch.isnan(outcomes[0].total) and torch.isfinite(outcomes[1].total)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_skipped_update_left_the_same_state_as_no_update(monkeypatch):
    monkeypatch.setattr(update_step_module, "reads_are_free", lambda device: False)
    skipped, clean = bn_model(nan_loss_at=(2,)), bn_model()
    stream, other = batches(), batches()
    step = UpdateStep(skipped, classification_losses, [unit(skipped, "SGD")], torch.device("cpu"))
    reference = UpdateStep(clean, classification_losses, [unit(clean, "SGD")], torch.device("cpu"))
    step(stream, 0), reference(other, 0)
    step(stream, 1)  # NaN: skipped
    next(other)  # the clean run never sees that batch
    step(stream, 2), reference(other, 1)
    for (name, a), b in zip(skipped.state_dict().items(), clean.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_skipped_update_puts_the_buffers_back_on_the_device_path(monkeypatch):
    monkeypatch.setattr(update_step_module, "reads_are_free", lambda device: False)
    model = bn_model(nan_loss_at=(2,))
    step = UpdateStep(model, classification_losses, [unit(model, "SGD")], torch.device("cpu"))
    stream = batches()
    step(stream, 0)
    before = {name: b.clone() for name, b in model.named_buffers()}
    assert float(step(stream, 1).skipped) == 1.0
    for name, value in model.named_buffers():
        assert torch.equal(value, before[name]), name  # counters included
    step(stream, 2)
    assert not torch.equal(model.model[1].running_mean, before["model.1.running_mean"])


def test_the_trainer_reads_one_update_late_where_reads_wait_for_the_device(monkeypatch, caplog):
    monkeypatch.setattr(trainer_module, "reads_are_free", lambda device: False)
    model = bn_model(nan_loss_at=(3, 4))
    trainer = Trainer(model, classification_losses, batches(), [unit(model, "SGD")], torch.device("cpu"))
    trainer.max_consecutive_skips = 2
    with pytest.raises(Exception, match=r"2 updates in a row \(iterations 2 to 3\) were skipped"):
        trainer.train(0, 10)
    assert trainer.iter == 4  # the verdict of update 3 was read once update 4 was under way
