"""COCO box mAP of predictions: values worked out by hand from IoUs, category mapping, empty predictions."""
import json

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from pet.data.coco import CocoDetection, collate_detection
from pet.engine.evaluation.coco import coco_box_metrics, coco_records, evaluate_detector

# Two images, one 20x20 box each; category ids 3 and 9 (labels 1 and 2).
ANNOTATIONS = {
    "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64},
               {"id": 2, "file_name": "b.png", "width": 64, "height": 64}],
    "categories": [{"id": 3, "name": "circle"}, {"id": 9, "name": "square"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 9, "bbox": [30, 30, 20, 20], "area": 400, "iscrowd": 0},
    ],
}


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 64)).save(tmp_path / "images" / name)
    (tmp_path / "ann.json").write_text(json.dumps(ANNOTATIONS))
    return CocoDetection(str(tmp_path / "images"), str(tmp_path / "ann.json"))


def record(image_id, category_id, bbox, score=0.9):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def test_perfect_predictions_score_100(dataset):
    metrics = coco_box_metrics(dataset, [record(1, 3, [10, 10, 20, 20]), record(2, 9, [30, 30, 20, 20])])
    assert metrics == pytest.approx({"val/mAP": 100.0, "val/AP50": 100.0, "val/AP75": 100.0,
                                     "val/AP-circle": 100.0, "val/AP-square": 100.0})


def test_a_box_at_iou_0_6_counts_at_thresholds_up_to_0_6(dataset):
    # [10, 10, 20, 20] against [10, 10, 20, 12]: intersection 240, union 400 -> IoU 0.6. It matches at the IoU
    # thresholds 0.50, 0.55, 0.60 of COCO's ten (0.50:0.05:0.95), so mAP = 3/10 of 100 for that category.
    metrics = coco_box_metrics(dataset, [record(1, 3, [10, 10, 20, 12]), record(2, 9, [30, 30, 20, 20])])
    assert metrics["val/AP-circle"] == pytest.approx(30.0)
    assert metrics["val/AP-square"] == pytest.approx(100.0)
    assert metrics["val/mAP"] == pytest.approx(65.0)
    assert metrics["val/AP50"] == pytest.approx(100.0) and metrics["val/AP75"] == pytest.approx(50.0)


def test_the_wrong_category_scores_0_and_no_detection_scores_0(dataset):
    assert coco_box_metrics(dataset, [record(1, 9, [10, 10, 20, 20])])["val/mAP"] == 0.0
    metrics = coco_box_metrics(dataset, [])
    assert set(metrics.values()) == {0.0} and "val/AP-square" in metrics


def test_records_map_labels_to_category_ids_and_drop_the_background():
    output = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 5.0, 5.0], [1.0, 2.0, 4.0, 8.0]]),
              "labels": torch.tensor([2, 0, 1]), "scores": torch.tensor([0.9, 0.8, 0.3])}
    records = coco_records(output, 7, [3, 9])
    assert [(r["category_id"], r["bbox"], r["image_id"]) for r in records] == [
        (9, [10.0, 10.0, 20.0, 20.0], 7), (3, [1.0, 2.0, 3.0, 6.0], 7)]
    assert [r["score"] for r in records] == pytest.approx([0.9, 0.3])


class Oracle(nn.Module):
    """Predicts each image's ground truth (labels 1 .. K); remembers the mode it was called in."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset, self.modes = dataset, []

    def forward(self, images):
        self.modes.append(self.training)
        outputs = []
        for index in range(len(images)):
            target = self.dataset.target(self.dataset.image_ids[len(self.modes) - 1 + index])
            n = len(target["labels"])
            outputs.append({"boxes": target["boxes"], "labels": target["labels"],
                            "scores": torch.ones(n)})
        return outputs


def test_evaluate_detector_runs_in_eval_mode_and_restores_the_mode(dataset):
    loader = DataLoader(dataset, batch_size=1, collate_fn=collate_detection)
    model = Oracle(dataset)
    model.train()
    metrics = evaluate_detector(model, loader, dataset, torch.device("cpu"))
    assert metrics["val/mAP"] == pytest.approx(100.0)
    assert model.modes == [False, False] and model.training


def test_each_process_predicts_its_shard_and_the_gathered_results_are_scored_together(dataset, monkeypatch):
    # Process 0 holds image 1 (right), process 1 image 2 (wrong category): the score is that of both together.
    from pet.engine.evaluation import coco as coco_evaluation
    from pet.engine.evaluation.coco import predict_coco

    other_shard = [record(2, 3, [30, 30, 20, 20])]
    monkeypatch.setattr(coco_evaluation, "all_gather_objects", lambda mine: [mine, other_shard])
    loader = DataLoader(torch.utils.data.Subset(dataset, [0]), batch_size=1, collate_fn=collate_detection)
    assert [r["image_id"] for r in predict_coco(Oracle(dataset), loader, dataset, torch.device("cpu"))] == [1]
    metrics = evaluate_detector(Oracle(dataset), loader, dataset, torch.device("cpu"))
    # circle: the right detection (score 1.0) ranks above the false positive (0.9), so precision is 1 up to full
    # recall: AP 100. square: never detected: AP 0. mAP: their mean.
    assert metrics["val/AP-circle"] == pytest.approx(100.0) and metrics["val/AP-square"] == 0.0
    assert metrics["val/mAP"] == pytest.approx(50.0)
    assert metrics == pytest.approx(coco_box_metrics(dataset, [record(1, 3, [10, 10, 20, 20], 1.0)] + other_shard))
