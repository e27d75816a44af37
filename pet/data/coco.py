"""A COCO-format detection data set: an images folder and an annotation JSON, read with pycocotools.

Samples are (image, target) pairs in the form torchvision's detection models take: a float CxHxW image in
[0, 1] (the model normalises and resizes it) and a dict with `boxes` (N x 4, x1 y1 x2 y2 in pixels), `labels`
(1..K, 0 being the background) and `image_id` (the COCO id, which evaluation maps predictions back to).
"""
import contextlib
import io
import logging
import os
from typing import Any, Dict, List, Sequence, Tuple

import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from pet.config.node import shown
from pet.errors import DataError

logger = logging.getLogger(__name__)

Target = Dict[str, torch.Tensor]


class CocoDetection(Dataset):
    """The images of a COCO annotation file, each with its non-crowd boxes.

    Category ids (any integers, as in COCO's 1..90 with gaps) are mapped in sorted order to labels 1..K;
    `category_ids[label - 1]` maps back. Boxes with no area are dropped (the detectors cannot train on them);
    images without boxes stay, as negatives.
    """

    random_samples = False  # no augmentation: nothing for `pet.data.seeded` to seed

    def __init__(self, images_dir: str, annotation_file: str) -> None:
        for path, what in ((images_dir, "images folder"), (annotation_file, "annotation file")):
            if not os.path.exists(path):
                raise DataError(f"the {what} {path} does not exist")
        if not os.path.isfile(annotation_file):
            raise DataError(f"the annotation file {annotation_file} is not a file")
        self.images_dir = images_dir
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
                self.coco = COCO(annotation_file)
        except (OSError, ValueError, KeyError, TypeError, AssertionError, RecursionError) as e:
            raise DataError(f"{annotation_file} is not a COCO annotation file: {type(e).__name__}: "
                            f"{' '.join(str(e).split())[:200]}") from None
        check_annotations(self.coco, annotation_file)
        self.category_ids: List[int] = sorted(self.coco.getCatIds())
        self.category_names: List[str] = [self.coco.cats[i]["name"] for i in self.category_ids]
        self.labels = {category_id: label for label, category_id in enumerate(self.category_ids, start=1)}
        self.image_ids: List[int] = sorted(self.coco.getImgIds())
        dropped = sum(1 for a in self.coco.anns.values() if not a.get("iscrowd", 0) and not has_area(a["bbox"]))
        if dropped:
            logger.warning("%s: %d boxes without area are ignored", annotation_file, dropped)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Target]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = os.path.join(self.images_dir, info["file_name"])
        try:
            with Image.open(path) as image:
                pixels = pil_to_tensor(image.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as e:  # PIL's ways to refuse a broken image
            raise DataError(f"cannot read image {path}: {' '.join(str(e).split())[:200]}") from None
        return pixels.float().div_(255), self.target(image_id)

    def target(self, image_id: int) -> Target:
        """The boxes (x1 y1 x2 y2), labels and id of one image."""
        annotations = [a for a in self.coco.imgToAnns.get(image_id, [])
                       if not a.get("iscrowd", 0) and has_area(a["bbox"])]
        boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([self.labels[a["category_id"]] for a in annotations], dtype=torch.int64)
        return {"boxes": boxes, "labels": labels, "image_id": torch.tensor(image_id)}


def _is_id(value: Any) -> bool:
    """An integer that fits the int64 tensors ids are kept in."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63


def _is_coordinate(value: Any) -> bool:
    """A finite number of pixels (1e6 is larger than any image)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= 1e6


def check_annotations(coco: COCO, annotation_file: str) -> None:
    """A `DataError` naming the first image, category or annotation this project cannot use, before training
    rather than when its image is first drawn: ids that are not integers, an image without a `file_name` in the
    images folder, a category without a `name`, a box that is not four numbers, an unknown category."""
    for image in coco.imgs.values():
        name = image.get("file_name")
        if not _is_id(image.get("id")):
            raise DataError(f"{annotation_file}: the image id {image.get('id')!r} is not an integer")
        if not (isinstance(name, str) and name and not os.path.isabs(name) and ".." not in name.split("/")
                and "\0" not in name):
            raise DataError(f"{annotation_file}: image {image['id']} has the file_name {name!r}, not a path inside "
                            "the images folder")
    if not coco.cats:
        raise DataError(f"{annotation_file} holds no categories")
    for category in coco.cats.values():
        if not _is_id(category.get("id")) or not isinstance(category.get("name"), str):
            raise DataError(f"{annotation_file}: the category {shown(category, 100)} needs an integer id and a name")
    for annotation in coco.anns.values():
        box = annotation.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_coordinate(v) for v in box)):
            raise DataError(f"{annotation_file}: annotation {annotation.get('id')} has the bbox {shown(box, 100)}, not "
                            "four numbers of pixels [x, y, width, height]")
        if annotation.get("iscrowd", 0) not in (0, 1) or not _is_coordinate(annotation.get("area", 0)):
            raise DataError(f"{annotation_file}: annotation {annotation.get('id')} has iscrowd "
                            f"{annotation.get('iscrowd')!r} or area {annotation.get('area')!r}: 0 or 1, and a number")
        annotation.setdefault("area", box[2] * box[3])  # COCO's evaluation reads it
        if annotation.get("category_id") not in coco.cats:
            raise DataError(f"{annotation_file}: annotation {annotation.get('id')} names the category "
                            f"{annotation.get('category_id')!r}, which the file's categories do not hold")
        if annotation.get("image_id") not in coco.imgs:
            raise DataError(f"{annotation_file}: annotation {annotation.get('id')} names the image "
                            f"{annotation.get('image_id')!r}, which the file's images do not hold")


def has_area(bbox: Sequence[float]) -> bool:
    """Whether a COCO [x, y, w, h] box has positive width and height."""
    return bbox[2] > 0 and bbox[3] > 0


def collate_detection(batch: List[Tuple[torch.Tensor, Target]]) -> Tuple[List[torch.Tensor], List[Target]]:
    """A batch as (list of images, list of targets): detection images differ in size, so they are not stacked."""
    images, targets = zip(*batch)
    return list(images), list(targets)

