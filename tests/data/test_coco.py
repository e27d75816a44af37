"""The COCO-format data set: targets in torchvision's form, category ids mapped, crowd and empty boxes dropped,
clear errors for missing or broken files."""
import json

import pytest
import torch
from PIL import Image

from pet.config import ConfigError, get_cfg
from pet.data import DataError, build_dataset, build_train_loader, build_val_loader
from pet.data.coco import CocoDetection, collate_detection

# Category ids with a gap (as COCO's 1..90), a crowd box, a box without width, an image without boxes.
ANNOTATIONS = {
    "images": [{"id": 7, "file_name": "a.png", "width": 32, "height": 24},
               {"id": 3, "file_name": "b.png", "width": 16, "height": 16}],
    "categories": [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 5], "area": 50, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 2, "bbox": [4, 4, 3, 8], "area": 24, "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 2, "bbox": [0, 0, 30, 20], "area": 600, "iscrowd": 1},
        {"id": 4, "image_id": 7, "category_id": 5, "bbox": [9, 9, 0, 4], "area": 0, "iscrowd": 0},
    ],
}


@pytest.fixture
def coco_folder(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 24), (255, 0, 0)).save(tmp_path / "images" / "a.png")
    Image.new("L", (16, 16), 128).save(tmp_path / "images" / "b.png")  # grey: read as RGB
    (tmp_path / "instances.json").write_text(json.dumps(ANNOTATIONS))
    return tmp_path


def test_targets_in_torchvision_form(coco_folder, caplog):
    dataset = CocoDetection(str(coco_folder / "images"), str(coco_folder / "instances.json"))
    assert "1 boxes without area are ignored" in caplog.text
    assert len(dataset) == 2 and dataset.image_ids == [3, 7]
    assert dataset.category_ids == [2, 5] and dataset.category_names == ["dog", "cat"]

    image, target = dataset[1]  # image 7
    assert image.shape == (3, 24, 32) and image.dtype == torch.float32
    assert torch.equal(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    # [x, y, w, h] -> [x1, y1, x2, y2]; cat (id 5) -> label 2, dog (id 2) -> label 1; crowd and w = 0 dropped.
    assert torch.equal(target["boxes"], torch.tensor([[1.0, 2.0, 11.0, 7.0], [4.0, 4.0, 7.0, 12.0]]))
    assert target["labels"].tolist() == [2, 1] and int(target["image_id"]) == 7

    image, target = dataset[0]  # image 3: a negative
    assert image.shape == (3, 16, 16) and torch.allclose(image, torch.full((3, 16, 16), 128 / 255))
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_collate_keeps_lists(coco_folder):
    dataset = CocoDetection(str(coco_folder / "images"), str(coco_folder / "instances.json"))
    images, targets = collate_detection([dataset[0], dataset[1]])
    assert [tuple(i.shape) for i in images] == [(3, 16, 16), (3, 24, 32)]
    assert [int(t["image_id"]) for t in targets] == [3, 7]


def coco_cfg(folder):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.NAME", "fcos_resnet18_fpn", "MODEL.NUM_CLASSES", 3, "DATA.DATASET", "coco",
                         "DATA.ROOT", str(folder), "DATA.COCO.TRAIN_IMAGES", "images",
                         "DATA.COCO.TRAIN_JSON", "instances.json", "DATA.COCO.VAL_IMAGES", "images",
                         "DATA.COCO.VAL_JSON", "instances.json", "TRAIN.BATCH_SIZE", 2, "TEST.BATCH_SIZE", 2])
    return cfg


def test_build_from_the_config_with_list_batches(coco_folder):
    cfg = coco_cfg(coco_folder)
    train = build_dataset(cfg, "train")
    images, targets = next(iter(build_train_loader(cfg, train)))
    assert isinstance(images, list) and len(images) == len(targets) == 2
    images, targets = next(iter(build_val_loader(cfg, build_dataset(cfg, "val"))))
    assert [int(t["image_id"]) for t in targets] == [3, 7]  # in order


@pytest.mark.parametrize("key", ["TRAIN_IMAGES", "TRAIN_JSON"])
def test_a_missing_path_names_its_key(coco_folder, key):
    cfg = coco_cfg(coco_folder)
    cfg.DATA.COCO[key] = "nowhere"
    with pytest.raises(ConfigError, match=rf"^DATA\.COCO\.{key} = 'nowhere': .*nowhere does not exist"):
        build_dataset(cfg, "train")


def test_an_absolute_path_ignores_the_root(coco_folder):
    cfg = coco_cfg("/somewhere/else")
    cfg.DATA.COCO.TRAIN_IMAGES = str(coco_folder / "images")
    cfg.DATA.COCO.TRAIN_JSON = str(coco_folder / "instances.json")
    assert len(build_dataset(cfg, "train")) == 2


def test_broken_files_are_data_errors(coco_folder):
    (coco_folder / "broken.json").write_text('{"images": [], "annotations": [{"image_id": 1}]}')
    with pytest.raises(DataError, match="broken.json is not a COCO annotation file"):
        CocoDetection(str(coco_folder / "images"), str(coco_folder / "broken.json"))
    (coco_folder / "images" / "a.png").write_bytes(b"not a png")
    dataset = CocoDetection(str(coco_folder / "images"), str(coco_folder / "instances.json"))
    with pytest.raises(DataError, match=r"cannot read image .*a\.png"):
        dataset[1]


@pytest.mark.parametrize("change, message", [
    (lambda a: a["annotations"][0].update(bbox="1 2 10 5"), r"annotation 1 has the bbox '1 2 10 5', not four numbers"),
    (lambda a: a["annotations"][1].pop("bbox"), r"annotation 2 has the bbox None, not four numbers"),
    (lambda a: a["annotations"][0].update(category_id=9), r"annotation 1 names the category 9, which the file's "
                                                          r"categories do not hold"),
])
def test_broken_annotations_are_named_when_the_file_is_read(coco_folder, change, message):
    annotations = json.loads(json.dumps(ANNOTATIONS))
    change(annotations)
    (coco_folder / "bad.json").write_text(json.dumps(annotations))
    with pytest.raises(DataError, match=message):
        CocoDetection(str(coco_folder / "images"), str(coco_folder / "bad.json"))


def test_a_folder_as_the_annotation_file_is_a_data_error(coco_folder):
    with pytest.raises(DataError, match=r"the annotation file .*images is not a file"):
        CocoDetection(str(coco_folder / "images"), str(coco_folder / "images"))
