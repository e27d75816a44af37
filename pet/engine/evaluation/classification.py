"""Classification evaluation: top-1 (and, beyond 5 classes, top-5) accuracy and mean loss over a (sharded)
validation set, with the confusion matrix behind them and a one-line per-class summary of it."""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pet.engine.distributed.process_group import all_gather_objects, all_reduce_sum, is_main_process

ALL_CLASSES_UP_TO = 30  # beyond this many classes, the per-class line names the lowest and highest only
EXTREMES_SHOWN = 5


class ClassifierResults(Dict[str, float]):
    """The results by name (what the writers record), with the confusion matrix they come from: `confusion[t, p]`
    counts the validation images of class t predicted as p, over every process. It stays an attribute, not a
    result: with 1000 classes, a million numbers would flood metrics.json and TensorBoard."""

    def __init__(self, results: Dict[str, float], confusion: torch.Tensor,
                 class_names: Optional[List[str]] = None) -> None:
        super().__init__(results)
        self.confusion = confusion
        self.class_names = class_names or [str(index) for index in range(confusion.shape[0])]


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader: DataLoader, device: torch.device) -> ClassifierResults:
    """Accuracy (%), top-5 accuracy (%, for more than 5 classes) and loss over every process's shard of the
    validation set, and the confusion matrix (true class x predicted class), summed across processes."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # correct, correct in the top 5, loss sum, count
    counts: Optional[torch.Tensor] = None  # the flattened confusion matrix, true * classes + predicted
    classes = 0
    for images, labels in tqdm(loader, desc="eval", leave=False, disable=None if is_main_process() else True):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images).float()
        classes = logits.shape[1]
        predicted = logits.argmax(dim=1)
        totals[0] += (predicted == labels).sum()
        totals[1] += (logits.topk(min(5, classes), dim=1).indices == labels[:, None]).any(dim=1).sum()
        totals[2] += F.cross_entropy(logits, labels, reduction="sum")
        totals[3] += labels.numel()
        pairs = torch.bincount(labels * classes + predicted, minlength=classes * classes)
        counts = pairs.double() if counts is None else counts + pairs
    model.train(was_training)
    # A process whose shard is empty saw no logits: every process takes the largest count of classes, so that
    # the matrices it sums have one shape.
    classes = max(all_gather_objects(classes))
    if counts is None:
        counts = torch.zeros(classes * classes, dtype=torch.float64, device=device)
    summed = all_reduce_sum(torch.cat([totals, counts]))  # one collective; counts below 2**53 stay exact
    correct, top5, loss_sum, count = summed[:4].tolist()
    results = {"val/accuracy": 100.0 * correct / max(count, 1), "val/loss": loss_sum / max(count, 1)}
    if classes > 5:
        results["val/top5_accuracy"] = 100.0 * top5 / max(count, 1)
    return ClassifierResults(results, summed[4:].round().long().view(classes, classes).cpu())


def per_class_accuracy(confusion: torch.Tensor) -> List[float]:
    """Each true class's accuracy (%): the share of its images predicted as itself; NaN for a class without
    validation images."""
    images = confusion.sum(dim=1).double()
    correct = confusion.diagonal().double()
    return [100.0 * c / n if n > 0 else math.nan for c, n in zip(correct.tolist(), images.tolist())]


def per_class_line(results: ClassifierResults) -> str:
    """One log line of per-class accuracy: every class up to `ALL_CLASSES_UP_TO`, else the lowest and highest
    `EXTREMES_SHOWN` (a line, not a table of 1000). It names the overall top-1 so that, next to the weight average's
    line, it says which weights it is of."""
    accuracy = per_class_accuracy(results.confusion)
    named = [(name, value) for name, value in zip(results.class_names, accuracy) if not math.isnan(value)]
    images = int(results.confusion.sum())
    head = f"Per-class accuracy (%; top-1 {results['val/accuracy']:.2f} over {images} images"
    missing = len(accuracy) - len(named)
    head += f"; {missing} of {len(accuracy)} classes without images)" if missing else ")"
    if len(named) <= ALL_CLASSES_UP_TO:
        return f"{head}: {shown(named)}"
    ranked = sorted(named, key=lambda pair: pair[1])
    mean = sum(value for _, value in named) / len(named)
    return (f"{head}: mean over {len(named)} classes {mean:.1f}; lowest {shown(ranked[:EXTREMES_SHOWN])}; highest "
            f"{shown(ranked[-EXTREMES_SHOWN:][::-1])}")


def shown(pairs: List[Tuple[str, float]]) -> str:
    """`name 95.0, other 87.5` for (name, accuracy) pairs."""
    return ", ".join(f"{name} {value:.1f}" for name, value in pairs)
