"""Classification evaluation against hand-counted answers: top-1, top-5 (beyond 5 classes only) and the loss."""
import math

import pytest
import torch
from torch import nn

from pet.engine.evaluation.classification import evaluate_classifier


class FixedLogits(nn.Module):
    """Returns the logits row of each sample's index (the 'image' is the index)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, images):
        return self.logits[images.long()]


def test_top1_top5_and_loss_by_hand():
    # 7 classes, 3 samples whose labels rank 1st, 5th and 7th among their logits.
    logits = [[6.0, 5, 4, 3, 2, 1, 0], [6.0, 5, 4, 3, 2, 1, 0], [0.0, 1, 6, 5, 4, 3, 2]]
    labels = torch.tensor([0, 4, 0])
    loader = [(torch.arange(3), labels)]
    results = evaluate_classifier(FixedLogits(logits), loader, torch.device("cpu"))
    assert results["val/accuracy"] == pytest.approx(100 / 3)
    assert results["val/top5_accuracy"] == pytest.approx(200 / 3)  # the 1st and the 5th, not the 7th
    losses = [math.log(sum(math.exp(v) for v in row)) - row[label] for row, label in zip(logits, labels.tolist())]
    assert results["val/loss"] == pytest.approx(sum(losses) / 3)


def test_no_top5_with_five_classes_or_fewer():
    loader = [(torch.arange(2), torch.tensor([0, 1]))]
    results = evaluate_classifier(FixedLogits([[1.0, 0, 0, 0, 0], [0.0, 1, 0, 0, 0]]), loader, torch.device("cpu"))
    assert sorted(results) == ["val/accuracy", "val/loss"] and results["val/accuracy"] == 100.0
