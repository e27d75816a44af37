"""The embedded detection data set: coloured circles, squares and triangles on noise, drawn from a seed.

Nothing is downloaded. On first use the images and COCO-format annotation files are written under a folder
named after every generation setting, so a changed setting never reads a stale set; afterwards the set is read
back like any user's COCO data. The same seed gives the same pixels and boxes on every machine (NumPy's PCG64 and
Pillow's integer drawing).
"""
import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

logger = logging.getLogger(__name__)

CATEGORIES = ("circle", "square", "triangle")
SPLITS = ("train", "val")
MIN_SIDE_FRACTION, MAX_SIDE_FRACTION = 0.15, 0.45  # of the image side: every shape is clearly visible
MAX_PLACEMENT_TRIES = 50


def shapes_folder(root: str, seed: int, image_size: int, num_images: Dict[str, int], max_shapes: int) -> str:
    """The folder that holds the set generated with these settings."""
    counts = "-".join(f"{split}{num_images[split]}" for split in SPLITS)
    return os.path.join(root, f"shapes_seed{seed}_{image_size}px_{counts}_max{max_shapes}")


def shapes_paths(folder: str, split: str) -> Tuple[str, str]:
    """(images folder, annotation file) of one split."""
    return os.path.join(folder, split), os.path.join(folder, "annotations", f"{split}.json")


def ensure_shapes(root: str, seed: int, image_size: int, num_images: Dict[str, int], max_shapes: int) -> str:
    """Generate the set unless it is already there; return its folder.

    The set is written to a temporary folder and renamed into place, so an interrupted generation leaves nothing
    half-written, and processes generating at the same time (DDP ranks) all end up reading one complete set.
    """
    folder = shapes_folder(root, seed, image_size, num_images, max_shapes)
    if os.path.isdir(folder):
        return folder
    logger.info("Generating the shapes set (%s) in %s", ", ".join(f"{n} {split}" for split, n in num_images.items()),
                folder)
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".shapes-", dir=root)
    try:
        for split_index, split in enumerate(SPLITS):
            write_split(staging, split, np.random.default_rng([seed, split_index]), image_size, num_images[split],
                        max_shapes)
        try:
            os.rename(staging, folder)
        except OSError:  # another process renamed its identical copy first
            if not os.path.isdir(folder):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def write_split(folder: str, split: str, rng: np.random.Generator, image_size: int, count: int,
                max_shapes: int) -> None:
    """Draw `count` images into `folder/split/` and their annotations into `folder/annotations/split.json`."""
    images_dir, annotation_file = shapes_paths(folder, split)
    os.makedirs(images_dir)
    os.makedirs(os.path.dirname(annotation_file), exist_ok=True)
    images, annotations = [], []
    for image_id in tqdm(range(1, count + 1), desc=f"generating shapes/{split}", leave=False, disable=None):
        image, shapes = draw_image(rng, image_size, max_shapes)
        file_name = f"{image_id:06d}.png"
        image.save(os.path.join(images_dir, file_name))
        images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
        for category, box, polygon in shapes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": box, "area": float(box[2] * box[3]), "iscrowd": 0,
                                "segmentation": [polygon]})
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)]
    with open(annotation_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def draw_image(rng: np.random.Generator, size: int, max_shapes: int) -> Tuple[Image.Image, List[tuple]]:
    """One image of 1..max_shapes non-overlapping shapes on noise, with (category id, [x, y, w, h], polygon)."""
    noise = rng.normal(127, 40, size=(size, size, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(noise)
    draw = ImageDraw.Draw(image)
    placed: List[List[int]] = []
    shapes = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        box = place_box(rng, size, placed)
        if box is None:
            continue
        category = int(rng.integers(len(CATEGORIES)))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        polygon = draw_shape(draw, CATEGORIES[category], box, colour)
        placed.append(box)
        shapes.append((category + 1, box, polygon))
    return image, shapes


def place_box(rng: np.random.Generator, size: int, placed: List[List[int]]) -> Optional[List[int]]:
    """A random square [x, y, side, side] inside the image that touches none of `placed` (None if none fits)."""
    low, high = int(size * MIN_SIDE_FRACTION), int(size * MAX_SIDE_FRACTION)
    for _ in range(MAX_PLACEMENT_TRIES):
        side = int(rng.integers(low, high + 1))
        x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        if all(x + side <= px or px + pw <= x or y + side <= py or py + ph <= y for px, py, pw, ph in placed):
            return [x, y, side, side]
    return None


def draw_shape(draw: ImageDraw.ImageDraw, category: str, box: List[int], colour: tuple) -> List[float]:
    """Fill the shape inside `box` (x, y, w, h); return its outline as a flat COCO polygon."""
    x, y, w, h = box
    right, bottom = x + w - 1, y + h - 1  # Pillow's corners are inclusive
    if category == "circle":
        draw.ellipse([x, y, right, bottom], fill=colour)
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        points = [(x + w / 2 + w / 2 * np.cos(a), y + h / 2 + h / 2 * np.sin(a)) for a in angles]
    elif category == "square":
        draw.rectangle([x, y, right, bottom], fill=colour)
        points = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    else:
        draw.polygon([(x, bottom), (right, bottom), (x + (w - 1) / 2, y)], fill=colour)
        points = [(x, y + h), (x + w, y + h), (x + w / 2, y)]
    return [round(float(c), 2) for point in points for c in point]
