"""MODEL.NAME selects the task; a data set of the other task, or a class count that does not fit, is a
ConfigError naming the keys."""
import shutil

import pytest

from pet.config import ConfigError, get_cfg
from pet.data import build_dataset
from pet.engine.evaluation.tasks import CLASSIFICATION, DETECTION, check_num_classes, task_of
from tests.data.test_image_folder import make_folder
from tests.toy_detection import tiny_cfg


def cfg_with(**keys):
    cfg = get_cfg()
    cfg.merge_from_list([item for pair in keys.items() for item in pair])
    return cfg


@pytest.mark.parametrize("name, dataset, task", [("resnet18", "digits", CLASSIFICATION),
                                                 ("fcos_resnet18_fpn", "shapes", DETECTION),
                                                 ("fasterrcnn_mobilenet_v3_large_320_fpn", "coco", DETECTION)])
def test_the_model_name_selects_the_task(name, dataset, task):
    assert task_of(cfg_with(**{"MODEL.NAME": name, "DATA.DATASET": dataset})) is task


@pytest.mark.parametrize("name, dataset, message", [
    ("resnet18", "shapes", r"DATA\.DATASET = 'shapes' does not fit the classification model MODEL\.NAME = "
                           r"'resnet18'; allowed: digits \| image_folder \| fake"),
    ("retinanet_resnet50_fpn", "digits", r"DATA\.DATASET = 'digits' does not fit the detection model "
                                         r"MODEL\.NAME = 'retinanet_resnet50_fpn'; allowed: shapes \| coco"),
])
def test_a_data_set_of_the_other_task_is_refused(name, dataset, message):
    with pytest.raises(ConfigError, match=message):
        task_of(cfg_with(**{"MODEL.NAME": name, "DATA.DATASET": dataset}))


def test_a_detector_needs_the_categories_plus_the_background(shapes_root):
    cfg = tiny_cfg(shapes_root)
    train = build_dataset(cfg, "train")
    check_num_classes(cfg, train)  # 3 shapes + background = 4, as the shipped config says
    cfg.MODEL.NUM_CLASSES = 3
    with pytest.raises(ConfigError, match=r"^MODEL\.NUM_CLASSES = 3 does not fit the data set's 3 categories "
                                          r"\(circle, square, triangle\); a detector needs 4"):
        check_num_classes(cfg, train)


def test_keys_of_the_other_task_are_refused_not_ignored():
    with pytest.raises(ConfigError, match=r"^MODEL\.SMALL_INPUT = True applies to classifiers, not to the detector "
                                          r"fcos_resnet18_fpn"):
        task_of(cfg_with(**{"MODEL.NAME": "fcos_resnet18_fpn", "DATA.DATASET": "shapes", "MODEL.SMALL_INPUT": True}))
    with pytest.raises(ConfigError, match=r"^MODEL\.DETECTION\.MAX_SIZE = 640 applies to detectors, not to the "
                                          r"classifier resnet18; leave it at 1333"):
        task_of(cfg_with(**{"MODEL.DETECTION.MAX_SIZE": 640}))


def test_a_classifier_with_fewer_outputs_than_the_data_has_classes_is_refused():
    cfg = cfg_with(**{"MODEL.NUM_CLASSES": 5})
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    with pytest.raises(ConfigError, match=r"^MODEL\.NUM_CLASSES = 5 is smaller than the data set's 10 classes; "
                                          r"set it to 10$"):
        check_num_classes(cfg, train, val)
    cfg.MODEL.NUM_CLASSES = 12  # spare outputs are harmless
    check_num_classes(cfg, train, val)


def test_validation_classes_that_differ_from_the_training_classes_are_refused(tmp_path):
    root = make_folder(tmp_path / "run", classes=("cat", "dog"))
    shutil.rmtree(root / "val")
    shutil.move(make_folder(tmp_path / "other", classes=("cat", "cow", "dog")) / "val", root / "val")
    cfg = cfg_with(**{"DATA.DATASET": "image_folder", "DATA.ROOT": str(root), "DATA.IMAGE_SIZE": 16})
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    with pytest.raises(ConfigError, match=r"^the training and validation sets have different classes: \['cat', "
                                          r"'dog'\] and \['cat', 'cow', 'dog'\]"):
        check_num_classes(cfg, train, val)
