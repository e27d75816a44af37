"""Detection evaluation: COCO box mAP (pycocotools' COCOeval) of a model's predictions on a validation set."""
import contextlib
import io
from typing import Dict, List

import numpy as np
import torch
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pet.data.coco import CocoDetection
from pet.engine.distributed.process_group import all_gather_objects, is_main_process

# COCOeval.stats indices of the numbers reported (box AP over IoU 0.50:0.95, at 0.50 and at 0.75), in %.
REPORTED_STATS = {"val/mAP": 0, "val/AP50": 1, "val/AP75": 2}


@torch.no_grad()
def predict_coco(model: nn.Module, loader: DataLoader, dataset: CocoDetection,
                 device: torch.device) -> List[dict]:
    """The model's detections on this process's share of the validation set, as COCO result records."""
    was_training = model.training
    model.eval()
    results: List[dict] = []
    for images, targets in tqdm(loader, desc="eval", leave=False, disable=None if is_main_process() else True):
        outputs = model([image.to(device, non_blocking=True) for image in images])
        for output, target in zip(outputs, targets):
            results.extend(coco_records(output, int(target["image_id"]), dataset.category_ids))
    model.train(was_training)
    return results


def coco_records(output: Dict[str, torch.Tensor], image_id: int, category_ids: List[int]) -> List[dict]:
    """One image's detections (x1 y1 x2 y2 boxes, labels 1..K) as COCO records ([x, y, w, h], category id).

    Label 0 is the background slot: a detector that scores it anyway has predicted no object.
    """
    boxes = output["boxes"].float().cpu()
    boxes[:, 2:] -= boxes[:, :2]
    return [{"image_id": image_id, "category_id": category_ids[label - 1], "bbox": [round(v, 2) for v in box],
             "score": score}
            for box, label, score in zip(boxes.tolist(), output["labels"].tolist(), output["scores"].tolist())
            if 1 <= label <= len(category_ids)]


def coco_box_metrics(dataset: CocoDetection, results: List[dict]) -> Dict[str, float]:
    """mAP, AP50, AP75 and the AP of each category (%) of `results` against the data set's annotations."""
    if not results:  # COCO.loadRes refuses an empty list; no detection is an AP of 0
        return {**{key: 0.0 for key in REPORTED_STATS},
                **{f"val/AP-{name}": 0.0 for name in dataset.category_names}}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress and its table
        evaluation = COCOeval(dataset.coco, dataset.coco.loadRes(results), "bbox")
        evaluation.params.imgIds = dataset.image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    metrics = {key: 100.0 * max(float(evaluation.stats[index]), 0.0) for key, index in REPORTED_STATS.items()}
    # precision: [IoU threshold, recall, category, area range (0: all), max detections (-1: 100)]; -1 = no data.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    for index, name in enumerate(dataset.category_names):
        values = precision[:, :, index]
        metrics[f"val/AP-{name}"] = 100.0 * float(np.mean(values[values > -1])) if (values > -1).any() else 0.0
    return metrics


def evaluate_detector(model: nn.Module, loader: DataLoader, dataset: CocoDetection,
                      device: torch.device) -> Dict[str, float]:
    """COCO box metrics over every process's share of the validation set (gathered on every process)."""
    shards = all_gather_objects(predict_coco(model, loader, dataset, device))
    return coco_box_metrics(dataset, [record for shard in shards for record in shard])
