"""The confusion matrix of a classifier's evaluation against scikit-learn's, in one process and summed over
several; the per-class line against accuracies counted in the test; the picture and numbers a run writes."""
import json
import logging
import math
import re

import pytest
import torch
from sklearn.metrics import confusion_matrix
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from pet.engine.evaluation.classification import ClassifierResults, evaluate_classifier, per_class_line
from pet.engine.evaluation.confusion_report import plot_confusion_matrix
from pet.engine.evaluation.tasks import evaluate_classification
from tests.engine.distributed_processes import run_in_processes


class FixedLogits(nn.Module):
    """Returns the logits row of each sample's index (the 'image' is the index)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, images):
        return self.logits[images.long()]


def known_predictions(samples=101, classes=12, seed=0):
    """Random logits and labels, with labels that are right about half of the time."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(samples, classes, generator=generator)
    labels = torch.where(torch.rand(samples, generator=generator) < 0.5, logits.argmax(dim=1),
                         torch.randint(0, classes, (samples,), generator=generator))
    return logits, labels


def sklearn_matrix(logits, labels):
    return confusion_matrix(labels.numpy(), logits.argmax(dim=1).numpy(), labels=list(range(logits.shape[1])))


def test_the_confusion_matrix_is_sklearns_over_every_batch():
    logits, labels = known_predictions()
    loader = DataLoader(TensorDataset(torch.arange(len(labels)), labels), batch_size=16)  # 7 batches, a short one
    results = evaluate_classifier(FixedLogits(logits), loader, torch.device("cpu"))
    assert results.confusion.tolist() == sklearn_matrix(logits, labels).tolist()
    assert sorted(results) == ["val/accuracy", "val/loss", "val/top5_accuracy"]  # no per-class scalars
    correct = (logits.argmax(dim=1) == labels).sum().item()
    assert results["val/accuracy"] == pytest.approx(100 * correct / len(labels))


def evaluate_a_shard(rank, world_size, samples):
    """Each process evaluates every world_size-th sample (as build_val_loader shards), the sum is the whole set's."""
    logits, labels = known_predictions(samples)
    shard = Subset(TensorDataset(torch.arange(samples), labels), range(rank, samples, world_size))
    results = evaluate_classifier(FixedLogits(logits), DataLoader(shard, batch_size=4), torch.device("cpu"))
    assert results.confusion.tolist() == sklearn_matrix(logits, labels).tolist()
    assert results.confusion.shape == (12, 12)


@pytest.mark.parametrize("samples", [37, 2], ids=["uneven shards", "a process without samples"])
def test_the_confusion_matrix_of_three_processes_is_the_whole_sets(tmp_path, samples):
    run_in_processes(evaluate_a_shard, 3, tmp_path, samples)


def test_the_per_class_line_names_every_class_and_its_accuracy(caplog):
    # class 0: 2 of 3 right; class 1: 1 of 1; class 2: no images
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0.0, 5, 0], [0.0, 5, 0]])
    labels = torch.tensor([0, 0, 0, 1])
    dataset = TensorDataset(torch.arange(4), labels)
    dataset.classes = ["cat", "dog", "emu"]
    with caplog.at_level(logging.INFO, logger="pet.engine.evaluation.tasks"):
        results = evaluate_classification(FixedLogits(logits), DataLoader(dataset, batch_size=3), dataset,
                                          torch.device("cpu"))
    (record,) = caplog.records
    assert record.getMessage() == ("Per-class accuracy (%; top-1 75.00 over 4 images; 1 of 3 classes without "
                                   "images): cat 66.7, dog 100.0")
    assert results.class_names == ["cat", "dog", "emu"]


def test_many_classes_get_the_lowest_and_highest_only():
    classes = 40
    confusion = torch.diag(torch.arange(1, classes + 1)) + 1  # class k: k + 2 right of k + 1 + 40 images
    accuracy = [100 * (k + 2) / (k + 1 + classes) for k in range(classes)]
    line = per_class_line(ClassifierResults({"val/accuracy": 50.0}, confusion))
    names = [f"{k} {accuracy[k]:.1f}" for k in range(classes)]
    assert f"mean over 40 classes {sum(accuracy) / classes:.1f}" in line
    assert f"lowest {', '.join(names[:5])}; highest {', '.join(names[::-1][:5])}" in line
    assert "6 " + f"{accuracy[6]:.1f}" not in line  # the middle is left out


def read_png(path):
    from matplotlib.image import imread

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return imread(path)


@pytest.mark.parametrize("classes", [10, 200])
def test_the_picture_is_a_png_of_a_sane_size(tmp_path, classes):
    confusion = torch.randint(0, 50, (classes, classes), generator=torch.Generator().manual_seed(0))
    path = str(tmp_path / "confusion_matrix.png")
    plot_confusion_matrix(confusion, [f"class {k}" for k in range(classes)], path, "a title")
    height, width, _ = read_png(path).shape
    assert 300 <= height <= 2000 and 300 <= width <= 2000
    assert [p.name for p in tmp_path.iterdir()] == ["confusion_matrix.png"]  # no temporary file left


def test_a_run_writes_the_final_confusion_matrix(tmp_path):
    from tests.engine.runs.test_runner import train_in_process

    assert train_in_process(tmp_path, "TRAIN.EVAL_PERIOD", "3") == 0
    height, width, _ = read_png(tmp_path / "confusion_matrix.png").shape
    assert 300 <= height <= 2000 and 300 <= width <= 2000
    data = json.load(open(tmp_path / "confusion_matrix.json"))
    assert data["iteration"] == 7 and data["classes"] == ["0", "1"]
    assert sum(map(sum, data["confusion_matrix"])) == 64  # the whole validation set of tests.user_builders
    assert data["images"] == [sum(row) for row in data["confusion_matrix"]]
    final = [json.loads(line) for line in open(tmp_path / "metrics.json")][-1]
    right = data["confusion_matrix"][0][0] + data["confusion_matrix"][1][1]
    assert final["val/accuracy"] == pytest.approx(100 * right / 64)
    assert not any(math.isnan(value) for value in data["accuracy"])


def test_a_link_where_the_picture_goes_stops_the_run_before_training(tmp_path, capsys):
    from tests.engine.runs.test_runner import train_in_process

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "confusion_matrix.png").symlink_to(tmp_path / "elsewhere.png")
    assert train_in_process(tmp_path, "--resume") == 2
    assert "refusing to follow the symbolic link" in capsys.readouterr().err
    assert not (tmp_path / "model_final.pth").exists() and not (tmp_path / "elsewhere.png").exists()


def test_test_net_logs_the_per_class_line(tmp_path, capsys):
    from tests.engine.runs.test_runner import train_in_process
    from tests.engine.test_user_builders import USER
    from tests.tools.test_cli_errors import DEFAULT_CFG, test_net

    assert train_in_process(tmp_path) == 0
    capsys.readouterr()
    assert test_net.run(test_net.main, ["--cfg", DEFAULT_CFG, "--weights", str(tmp_path / "model_final.pth"),
                                        *USER]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "Per-class accuracy" in line]
    assert re.search(r"Per-class accuracy \(%; top-1 [\d.]+ over 64 images\): 0 [\d.]+, 1 [\d.]+$", line), line
