"""The weights a schedule-free run evaluates and saves: the optimizer's average with BatchNorm statistics
recomputed by torch's `update_bn`, done by hand on a twin as the oracle; the RNG and the training weights untouched."""
import copy
import itertools

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, TensorDataset

from pet.engine.evaluation.schedule_free_weights import BATCH_STATISTICS_BATCHES, averaged_weights
from pet.engine.persistence.checkpointer import Checkpointer

schedulefree = pytest.importorskip("schedulefree")

DATA = TensorDataset(torch.randn(800, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1,
                     torch.zeros(800, dtype=torch.long))


def loader():
    return DataLoader(DATA, batch_size=8, shuffle=True)  # shuffles from the global RNG: the fork must hide it


def trained(optimizer_class=schedulefree.AdamWScheduleFree):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = optimizer_class(model.parameters(), lr=0.05)
    if hasattr(optimizer, "train"):
        optimizer.train()
    for images, labels in itertools.islice(loader(), 5):
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def test_the_average_with_statistics_recomputed_as_update_bn_by_hand():
    model, optimizer = trained()
    twin_model, twin = copy.deepcopy((model, optimizer))
    training = {k: v.clone() for k, v in model.state_dict().items()}
    twin.eval()
    torch.manual_seed(7)
    update_bn((batch[0] for batch in itertools.islice(loader(), BATCH_STATISTICS_BATCHES)), twin_model)
    torch.manual_seed(7)
    with averaged_weights([optimizer], model, loader, torch.device("cpu")):
        for name, value in twin_model.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert not torch.equal(model[1].running_mean, training["1.running_mean"])  # the statistics did move
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, training[name], msg=name)  # the training weights are back


def test_recomputing_draws_nothing_from_the_global_rng():
    model, optimizer = trained()
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    with averaged_weights([optimizer], model, loader, torch.device("cpu")):
        pass
    assert torch.equal(torch.rand(4), expected)


def test_without_a_schedule_free_optimizer_nothing_is_switched_or_recomputed():
    model, optimizer = trained(torch.optim.AdamW)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def no_loader():
        raise AssertionError("no batch should be drawn")

    with averaged_weights([optimizer], model, no_loader, torch.device("cpu")):
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_checkpoint_holds_the_averaged_weights(tmp_path):
    model, optimizer = trained()
    twin_model, twin = copy.deepcopy((model, optimizer))
    twin.eval()
    checkpointer = Checkpointer(str(tmp_path), model=model, optimizer=optimizer,
                                save_context=lambda: averaged_weights([optimizer], model, None, torch.device("cpu")))
    checkpointer.save("model_0000005", iteration=5)
    saved = torch.load(tmp_path / "model_0000005.pth", weights_only=False)
    for name, p in twin_model.named_parameters():
        torch.testing.assert_close(saved["model"][name], p, rtol=0, atol=0, msg=name)
    assert not any(torch.equal(p, q) for p, q in zip(model.parameters(), twin_model.parameters()))  # training again
    assert not saved["optimizer"]["param_groups"][0]["train_mode"]
