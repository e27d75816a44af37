"""A user's image folders: loading, and clear errors for missing folders, empty folders and unreadable images."""
import pytest
import torch
from PIL import Image

from pet.config import ConfigError, get_cfg
from pet.data import DataError, build_dataset


def make_folder(root, classes=("cat", "dog"), per_class=2, size=20):
    for split in ("train", "val"):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (size + i, size), color=(40 * index, 100, 200)).save(folder / f"{i}.png")
    return root


def folder_cfg(root, image_size=16):
    cfg = get_cfg()
    cfg.merge_from_list(["DATA.DATASET", "image_folder", "DATA.ROOT", str(root), "DATA.IMAGE_SIZE", image_size])
    return cfg


def test_loads_both_splits(tmp_path):
    cfg = folder_cfg(make_folder(tmp_path))
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert (len(train), len(val), train.classes) == (4, 4, ["cat", "dog"])
    image, label = val[3]
    assert image.shape == (3, 16, 16) and label == 1
    assert torch.isfinite(image).all()


def test_missing_folder_names_the_key_and_path(tmp_path):
    with pytest.raises(ConfigError, match=r"DATA\.ROOT = '.*nowhere' has no train/ folder"):
        build_dataset(folder_cfg(tmp_path / "nowhere"), "train")


def test_empty_folder_is_a_config_error(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(ConfigError, match=r"DATA\.ROOT = .*: train/ holds no images in class folders"):
        build_dataset(folder_cfg(tmp_path), "train")


def with_a_broken_image(root):
    """An image folder whose first training image is not an image; returns that file."""
    make_folder(root)
    broken = root / "train" / "cat" / "0.png"
    broken.write_bytes(b"not a png")
    return broken


def test_an_unreadable_image_stops_the_build_and_names_its_path(tmp_path):
    broken = with_a_broken_image(tmp_path)
    with pytest.raises(DataError, match=rf"cannot read image {broken}: .* \(DATA\.CHECK_IMAGES\)"):
        build_dataset(folder_cfg(tmp_path), "train")


def test_without_the_check_an_unreadable_image_fails_when_read(tmp_path):
    broken = with_a_broken_image(tmp_path)
    cfg = folder_cfg(tmp_path)
    cfg.DATA.CHECK_IMAGES = False
    dataset = build_dataset(cfg, "train")
    with pytest.raises(DataError, match=rf"cannot read image {broken}"):
        dataset[0]


def test_fake_data_is_deterministic_and_splits_differ():
    cfg = get_cfg()
    cfg.merge_from_list(["DATA.DATASET", "fake", "DATA.FAKE_SIZE", 8, "DATA.IMAGE_SIZE", 12])
    train, again, val = build_dataset(cfg, "train"), build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert len(train) == 8 and train[0][0].shape == (3, 12, 12)
    assert torch.equal(train[3][0], again[3][0])
    assert not torch.equal(train[3][0], val[3][0])


def test_a_truncated_jpeg_is_caught_by_the_check(tmp_path):
    root = make_folder(tmp_path)
    image = root / "train" / "cat" / "big.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(image, quality=95)
    image.write_bytes(image.read_bytes()[:600])  # the header is whole, the picture is cut
    with pytest.raises(DataError, match=r"cannot read image .*big\.jpg"):
        build_dataset(folder_cfg(root), "train")


def test_image_size_0_is_the_folder_s_own_224_and_a_far_smaller_size_is_said(tmp_path):
    from pet.data.build import data_warnings

    root = make_folder(tmp_path, size=240)
    own = build_dataset(folder_cfg(root, image_size=0), "val")
    assert own[0][0].shape == (3, 224, 224)
    assert data_warnings(folder_cfg(root, image_size=0), build_dataset(folder_cfg(root, 0), "train")) == []
    small = folder_cfg(root, image_size=32)
    (warning,) = data_warnings(small, build_dataset(small, "train"))
    first = root / "train" / "cat" / "0.png"
    assert warning == (f"DATA.IMAGE_SIZE = 32: the images are trained at 32x32 pixels, but {first} is 240x240; is "
                       "that meant? (0 trains image folders at 224)")
    assert data_warnings(folder_cfg(root, image_size=64), build_dataset(folder_cfg(root, 64), "train")) == []
