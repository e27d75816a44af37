"""tools/show_detections.py's `draw_predictions` with a stub detector of fixed outputs: the line said for an image
where nothing is drawn, and captions on a filled box. The oracle for the pixels is torchvision's own
`draw_bounding_boxes`."""
import pytest
import torch
from torch import nn
from torchvision.utils import draw_bounding_boxes

from tests.tools.test_cli_errors import load_tool

show = load_tool("show_detections")

CATEGORIES = ["circle", "square"]


class StubDataset:
    """Three 48-pixel grey images, one ground-truth box on each but the last."""

    category_names = CATEGORIES

    def __len__(self):
        return 3

    def __getitem__(self, index):
        boxes = torch.tensor([[10.0, 12.0, 30.0, 40.0]]) if index < 2 else torch.zeros(0, 4)
        return torch.full((3, 48, 48), 0.5), {"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}


class StubDetector(nn.Module):
    """Returns the fixed detections of each call in turn, as a torchvision detector in eval mode does."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = list(outputs)

    def forward(self, images):
        boxes, scores, labels = self.outputs.pop(0)
        return [{"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                 "scores": torch.tensor(scores, dtype=torch.float32),
                 "labels": torch.tensor(labels, dtype=torch.int64)}]


def detections(*outputs):
    return StubDetector(outputs)


def test_an_image_without_a_drawn_detection_is_named_with_its_best_score(capsys):
    model = detections(([[2, 2, 20, 20], [5, 5, 40, 40]], [0.12, 0.05], [1, 2]),  # all below the threshold
                       ([[2, 2, 20, 20]], [0.9], [2]),  # drawn: no line
                       ([], [], []))  # the model found nothing
    show.draw_predictions(model, StubDataset(), [0, 1, 2], 0.4, torch.device("cpu"))
    assert capsys.readouterr().out.splitlines() == [
        "image 0: 0 detections >= 0.4; best score 0.12 (1 ground-truth box)",
        "image 2: 0 detections >= 0.4; the model returned no box (0 ground-truth boxes)"]


def test_a_label_outside_the_data_s_categories_does_not_count_as_the_best_score(capsys):
    # Label 7 is no category of the data (a checkpoint with more classes): never drawn, so not the reason either.
    model = detections(([[2, 2, 20, 20], [5, 5, 40, 40]], [0.95, 0.3], [7, 1]))
    show.draw_predictions(model, StubDataset(), [0], 0.5, torch.device("cpu"))
    assert capsys.readouterr().out == "image 0: 0 detections >= 0.5; best score 0.30 (1 ground-truth box)\n"


@pytest.mark.skipif(not show.FILLED_LABELS, reason="this torchvision draws no label background (before 0.23)")
def test_captions_are_drawn_on_a_box_of_their_category_s_colour(capsys):
    boxes, scores, labels = [[4, 4, 44, 30], [20, 22, 46, 46]], [0.9, 0.75], [1, 2]
    (drawn,) = show.draw_predictions(detections((boxes, scores, labels)), StubDataset(), [1], 0.4,
                                     torch.device("cpu"), scale=2)
    assert capsys.readouterr().out == ""
    # torchvision's own drawing of the same boxes and captions, filled, in the text colour for each background.
    image, target = StubDataset()[1]
    pixels = (image * 255).round().to(torch.uint8).repeat_interleave(2, 1).repeat_interleave(2, 2)
    pixels = draw_bounding_boxes(pixels, target["boxes"] * 2, colors="white", width=1)
    colours = [show.COLOURS[0], show.COLOURS[1]]
    expected = draw_bounding_boxes(pixels, torch.tensor(boxes, dtype=torch.float32) * 2,
                                   ["circle 0.90", "square 0.75"], colors=colours, width=2, fill_labels=True,
                                   label_colors=[show.text_colour(c) for c in colours])
    bare = draw_bounding_boxes(pixels, torch.tensor(boxes, dtype=torch.float32) * 2, ["circle 0.90", "square 0.75"],
                               colors=colours, width=2)
    assert torch.equal(drawn, expected)
    assert not torch.equal(drawn, bare)  # the background is there


@pytest.mark.parametrize("background, text", [("#ffffff", "black"), ("#000000", "white"), ("#bcf60c", "black"),
                                              ("#4363d8", "white"), ("#911eb4", "white"), ("#46f0f0", "black")])
def test_the_caption_text_is_black_on_light_and_white_on_dark_colours(background, text):
    assert show.text_colour(background) == text
