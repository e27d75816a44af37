"""tools/bench_knobs.py's image-folder job is the real digits written as PNG files (the same split, every image
readable by the loader at 32 pixels), and its table has a row per job and knob with ratios to eager."""
from collections import Counter

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from pet.data.digits import DigitsDataset
from pet.data.image_folder import ImageFolderDataset
from tests.tools.test_cli_errors import load_tool


def test_the_digits_folder_holds_the_digits_split_as_32_pixel_images(tmp_path):
    bench_knobs = load_tool("bench_knobs")
    root = bench_knobs.write_digits_folder(str(tmp_path / "digits32"))
    for split in ("train", "val"):
        folder = ImageFolderDataset(root, split, 32, check_images=False)
        labels = DigitsDataset(split).labels.tolist()
        assert Counter(int(folder.classes[t]) for _, t in folder.samples) == Counter(labels)
    first = DigitsDataset("train")
    with Image.open(tmp_path / "digits32" / "train" / str(int(first.labels[0])) / "0.png") as image:
        assert image.size == (32, 32)
        pixels = np.asarray(image.convert("L"))[::4, ::4]  # nearest-neighbour 4x: every 4th pixel is the digit's
    index = [i for i, row in enumerate(load_digits().images) if np.array_equal(np.round(row * 255 / 16), pixels)]
    assert index, "the first training image is not one of scikit-learn's digits"


def test_the_table_gives_medians_and_ratios_to_eager():
    bench_knobs = load_tool("bench_knobs")
    results = {"digits": {"eager": [(10.0, [0.1, 0.2, 0.3], 95.0), (12.0, [0.2], 96.0)],
                          "compile": [(20.0, [0.1], 95.5), (30.0, [0.1], 95.0)]}}
    rows = bench_knobs.markdown(results, 2, "cmd").splitlines()[4:]
    assert rows == ["| digits | eager | 200.0 | 11.0 | 1.000 | 1.000 | 95.0/96.0 |",
                    "| digits | compile | 100.0 | 25.0 | 0.500 | 2.273 | 95.5/95.0 |"]
