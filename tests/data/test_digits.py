"""The embedded digits: a deterministic, stratified, disjoint train/val split of scikit-learn's 1,797 images."""
import torch
from sklearn.datasets import load_digits

from pet.data import DigitsDataset


def test_split_sizes_and_stratification():
    train, val = DigitsDataset("train"), DigitsDataset("val")
    assert (len(train), len(val)) == (1437, 360)  # 20% of 1,797 rounded up goes to val
    counts = torch.bincount(val.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # about 36 of each of the 10 classes


def test_images_are_three_identical_channels_in_minus_one_to_one():
    images, label = DigitsDataset("train")[0]
    assert images.shape == (3, 8, 8) and images.dtype == torch.float32 and label.dtype == torch.int64
    assert torch.equal(images[0], images[1]) and torch.equal(images[1], images[2])
    assert images.min() >= -1 and images.max() <= 1


def test_split_is_deterministic_disjoint_and_complete():
    raw = torch.as_tensor(load_digits().images, dtype=torch.float32) / 8.0 - 1.0

    def originals(dataset):
        return {tuple(image[0].flatten().tolist()) for image, _ in dataset}

    train, val = DigitsDataset("train", seed=3), DigitsDataset("val", seed=3)
    assert torch.equal(DigitsDataset("train", seed=3).images, train.images)
    assert not torch.equal(DigitsDataset("train", seed=4).images, train.images)
    # Every raw image lands in exactly one split (a few digits are exact duplicates of others in the raw set).
    all_raw = {tuple(image.flatten().tolist()) for image in raw}
    assert originals(train) | originals(val) == all_raw
    assert len(train) + len(val) == len(raw)
