"""Classification evaluation: top-1 (and, beyond 5 classes, top-5) accuracy and mean loss over a (sharded)
validation set."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pet.engine.distributed.process_group import all_reduce_sum, is_main_process


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader: DataLoader, device: torch.device) -> Dict[str, float]:
    """Accuracy (%), top-5 accuracy (%, for more than 5 classes) and loss over every process's shard of the
    validation set, summed across processes."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # correct, correct in the top 5, loss sum, count
    classes = 0
    for images, labels in tqdm(loader, desc="eval", leave=False, disable=None if is_main_process() else True):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images).float()
        classes = logits.shape[1]
        totals[0] += (logits.argmax(dim=1) == labels).sum()
        totals[1] += (logits.topk(min(5, classes), dim=1).indices == labels[:, None]).any(dim=1).sum()
        totals[2] += F.cross_entropy(logits, labels, reduction="sum")
        totals[3] += labels.numel()
    model.train(was_training)
    correct, top5, loss_sum, count = all_reduce_sum(totals).tolist()
    results = {"val/accuracy": 100.0 * correct / max(count, 1), "val/loss": loss_sum / max(count, 1)}
    if classes > 5:
        results["val/top5_accuracy"] = 100.0 * top5 / max(count, 1)
    return results
