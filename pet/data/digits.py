"""The embedded default data set: scikit-learn's bundled handwritten digits (1,797 8x8 images, no download)."""
from typing import Tuple

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset


class DigitsDataset(Dataset):
    """One split of the digits, as 3x8x8 float tensors in [-1, 1] with integer labels.

    The train/val split is stratified by class and fixed by `seed`, so every run (and every process of a
    distributed run) sees the same split.
    """

    random_samples = False  # no augmentation: nothing for `pet.data.seeded` to seed

    def __init__(self, split: str, val_fraction: float = 0.2, seed: int = 0) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0 * 2.0 - 1.0
        labels = torch.as_tensor(digits.target, dtype=torch.int64)
        train_idx, val_idx = train_test_split(range(len(labels)), test_size=val_fraction, random_state=seed,
                                              stratify=digits.target)
        chosen = torch.as_tensor(train_idx if split == "train" else val_idx)
        # Three identical channels, so that every torchvision model takes them unchanged.
        self.images = images[chosen].unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
        self.labels = labels[chosen]
        self.classes = [str(digit) for digit in range(10)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]
