"""The generated shapes set: deterministic from its seed, valid COCO, boxes that enclose what was drawn."""
import filecmp
import json
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools.coco import COCO

from pet.data.shapes import CATEGORIES, draw_image, draw_shape, ensure_shapes, shapes_folder, shapes_paths
from tests.toy_detection import TINY, make_tiny_shapes

COUNTS = {"train": TINY["NUM_TRAIN"], "val": TINY["NUM_VAL"]}


def test_a_valid_coco_set_per_split(shapes_root):
    folder = shapes_folder(shapes_root, TINY["SEED"], TINY["IMAGE_SIZE"], COUNTS, TINY["MAX_SHAPES"])
    for split, count in COUNTS.items():
        images_dir, annotation_file = shapes_paths(folder, split)
        coco = COCO(annotation_file)
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CATEGORIES)
        assert len(coco.getImgIds()) == count == len(os.listdir(images_dir))
        for image_id in coco.getImgIds():
            info = coco.imgs[image_id]
            with Image.open(os.path.join(images_dir, info["file_name"])) as image:
                assert image.size == (info["width"], info["height"]) == (64, 64) and image.mode == "RGB"
            boxes = [a["bbox"] for a in coco.imgToAnns[image_id]]
            assert 1 <= len(boxes) <= TINY["MAX_SHAPES"]
            for x, y, w, h in boxes:
                assert w == h and 0.15 * 64 - 1 <= w <= 0.45 * 64 and 0 <= x <= 64 - w and 0 <= y <= 64 - h


def test_the_same_seed_gives_the_same_files_and_another_seed_others(shapes_root, tmp_path):
    again = make_tiny_shapes(str(tmp_path))
    first = shapes_folder(shapes_root, TINY["SEED"], TINY["IMAGE_SIZE"], COUNTS, TINY["MAX_SHAPES"])
    for split in COUNTS:
        (images_a, json_a), (images_b, json_b) = shapes_paths(first, split), shapes_paths(again, split)
        assert filecmp.cmp(json_a, json_b, shallow=False)
        names = sorted(os.listdir(images_a))
        assert filecmp.cmpfiles(images_a, images_b, names, shallow=False)[0] == names
    other = ensure_shapes(str(tmp_path), 1, TINY["IMAGE_SIZE"], COUNTS, TINY["MAX_SHAPES"])
    assert other != again
    assert not filecmp.cmp(shapes_paths(other, "train")[1], shapes_paths(again, "train")[1], shallow=False)


def test_train_and_val_differ(shapes_root):
    folder = shapes_folder(shapes_root, TINY["SEED"], TINY["IMAGE_SIZE"], COUNTS, TINY["MAX_SHAPES"])
    train, val = (json.load(open(shapes_paths(folder, split)[1])) for split in ("train", "val"))
    assert [a["bbox"] for a in train["annotations"][:5]] != [a["bbox"] for a in val["annotations"][:5]]


def test_an_existing_set_is_read_not_regenerated(shapes_root):
    folder = shapes_folder(shapes_root, TINY["SEED"], TINY["IMAGE_SIZE"], COUNTS, TINY["MAX_SHAPES"])
    annotation_file = shapes_paths(folder, "train")[1]
    before = os.stat(annotation_file).st_mtime_ns
    assert make_tiny_shapes(shapes_root) == folder
    assert os.stat(annotation_file).st_mtime_ns == before
    assert not [name for name in os.listdir(shapes_root) if name.startswith(".shapes-")]  # no staging left


def test_a_process_that_loses_the_rename_race_reads_the_winners_set(tmp_path, monkeypatch):
    real_rename = os.rename

    def another_process_finished_first(source, target):
        real_rename(source, target)  # the "other process" puts its identical set in place ...
        raise OSError(39, "Directory not empty")  # ... so this one's rename fails

    monkeypatch.setattr(os, "rename", another_process_finished_first)
    folder = make_tiny_shapes(str(tmp_path))
    assert os.path.isfile(shapes_paths(folder, "val")[1])
    assert [name for name in os.listdir(tmp_path)] == [os.path.basename(folder)]


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr("pet.data.shapes.draw_image", lambda *args: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        make_tiny_shapes(str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_shape_fills_its_box(category):
    """Probe pixels by hand: corners of the box, its centre and the middle of each side."""
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    colour = (200, 100, 50)
    polygon = draw_shape(ImageDraw.Draw(image), category, [10, 10, 20, 20], colour)
    pixels = np.asarray(image)
    painted = (pixels == colour).all(axis=2)
    ys, xs = np.nonzero(painted)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 29, 10, 29)  # the box, tight
    corners = {(10, 10), (29, 10), (10, 29), (29, 29)}  # (x, y)
    filled = {
        "square": corners,
        "circle": set(),  # a circle leaves the corners out
        "triangle": {(10, 29), (29, 29)},  # the base; the apex is at the top middle
    }[category]
    assert {c for c in corners if painted[c[1], c[0]]} == filled
    assert painted[20, 20]
    xs_polygon, ys_polygon = polygon[0::2], polygon[1::2]
    assert min(xs_polygon) >= 10 and max(xs_polygon) <= 30 and min(ys_polygon) >= 10 and max(ys_polygon) <= 30


def test_shapes_do_not_touch_each_other():
    rng = np.random.default_rng(3)
    for _ in range(30):
        _, shapes = draw_image(rng, 64, 6)
        boxes = [box for _, box, _ in shapes]
        for i, (x1, y1, w1, h1) in enumerate(boxes):
            for x2, y2, w2, h2 in boxes[i + 1:]:
                assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
