"""A user's own images: `ROOT/train/<class>/*.jpg` and `ROOT/val/<class>/*.jpg`, read by torchvision."""
import os
from typing import Any, Tuple

from PIL import Image
from torchvision import datasets, transforms
from tqdm import tqdm

from pet.errors import ConfigError, DataError

# ImageNet statistics: the usual choice for torchvision models.
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def image_transform(split: str, image_size: int) -> transforms.Compose:
    """Training: random crops and flips (CIFAR-style padded crops up to 64 pixels, ImageNet-style resized crops
    above). Validation: the central square (after a resize to 1/0.875 of the size above 64 pixels)."""
    small = image_size <= 64
    if split == "train" and small:
        steps = [transforms.Resize(image_size), transforms.RandomCrop(image_size, padding=image_size // 8),
                 transforms.RandomHorizontalFlip()]
    elif split == "train":
        steps = [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(image_size if small else int(round(image_size / 0.875))),
                 transforms.CenterCrop(image_size)]
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


class ImageFolderDataset(datasets.ImageFolder):
    """torchvision's ImageFolder for one split, with clear errors for missing folders and unreadable images."""

    def __init__(self, root: str, split: str, image_size: int, check_images: bool = True) -> None:
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            raise ConfigError(f"DATA.ROOT = {root!r} has no {split}/ folder (expected {folder}/<class>/<image>)")
        try:
            super().__init__(folder, transform=image_transform(split, image_size))
        except (FileNotFoundError, OSError) as e:
            raise ConfigError(f"DATA.ROOT = {root!r}: {split}/ holds no images in class folders ({e})") from None
        if check_images:
            self.check_images()

    def check_images(self) -> None:
        """Decode every image, so that an unreadable or truncated file stops the run before training (DataError)."""
        for path, _ in tqdm(self.samples, desc=f"checking {os.path.basename(self.root)} images", leave=False,
                            disable=None):
            try:
                with Image.open(path) as image:
                    image.load()  # the whole file: a truncated JPEG has a good header
            except Exception as e:  # PIL raises many types for broken files
                raise DataError(f"cannot read image {path}: {' '.join(str(e).split())} (DATA.CHECK_IMAGES)") from None

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        try:
            return super().__getitem__(index)
        except OSError as e:
            raise DataError(f"cannot read image {self.samples[index][0]}: {e}") from None
