"""Draw a detector's predictions on validation images: `python tools/show_detections.py --cfg FILE --weights CKPT`.

Each image shows the ground truth in white and the detections scoring at least --score in their category's
colour, labelled with the category and score on a box of that colour; the images are tiled into one PNG (default
OUTPUT_DIR/detections.png), counted from 0 left to right. For an image where no detection reaches --score, a line
on stdout says so with the best score the model gave it: `image 3: 0 detections >= 0.4; best score 0.12 (2
ground-truth boxes)`.
"""
import inspect
import os
import sys
from typing import Any, Dict, List, Optional

import torch
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import draw_bounding_boxes, make_grid

from pet.config import ConfigError, validate_cfg
from pet.data.coco import CocoDetection
from pet.engine.distributed.process_group import shutdown_distributed
from pet.engine.evaluation.tasks import DETECTION, task_of
from pet.engine.runs.cli import ArgumentParser, CommandLineError, load_config, output_file, run, write_output
from pet.engine.runs.runner import load_trained_model

COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]
# torchvision 0.23 added filled label backgrounds; setup.py allows older versions, which draw the captions bare.
FILLED_LABELS = {"fill_labels", "label_colors"} <= set(inspect.signature(draw_bounding_boxes).parameters)


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on the `#rrggbb` background (by its perceived brightness)."""
    red, green, blue = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "white"


def why_nothing_drawn(index: int, output: Dict[str, torch.Tensor], valid: torch.Tensor, score: float,
                      ground_truth: int) -> str:
    """The line said for an image without a detection drawn: the best score the model gave, against --score."""
    scores = output["scores"][valid]
    best = f"best score {scores.max().item():.2f}" if len(scores) else "the model returned no box"
    boxes = "box" if ground_truth == 1 else "boxes"
    return f"image {index}: 0 detections >= {score:g}; {best} ({ground_truth} ground-truth {boxes})"


@torch.no_grad()
def draw_predictions(model: torch.nn.Module, dataset: CocoDetection, indices: List[int], score: float,
                     device: torch.device, scale: int = 1) -> List[torch.Tensor]:
    """One uint8 image per index, enlarged `scale` times, with the ground truth (white) and the detections
    scoring >= `score`, their captions on a box of their category's colour; for an image with none, a line on
    stdout says the best score the model gave it."""
    model.eval()
    names = dataset.category_names
    drawn = []
    for index in indices:
        image, target = dataset[index]
        output = model([image.to(device)])[0]
        valid = (output["labels"] >= 1) & (output["labels"] <= len(names))  # a label past the data's categories
        keep = valid & (output["scores"] >= score)
        boxes, labels, scores = output["boxes"][keep].cpu(), output["labels"][keep].tolist(), output["scores"][keep]
        pixels = (image * 255).round().to(torch.uint8).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        if len(target["boxes"]):
            pixels = draw_bounding_boxes(pixels, target["boxes"] * scale, colors="white", width=1)
        if len(boxes):
            captions = [f"{names[label - 1]} {s:.2f}" for label, s in zip(labels, scores.tolist())]
            colours = [COLOURS[(label - 1) % len(COLOURS)] for label in labels]
            filled = {"fill_labels": True, "label_colors": [text_colour(c) for c in colours]} if FILLED_LABELS else {}
            pixels = draw_bounding_boxes(pixels, boxes * scale, captions, width=2, colors=colours, **filled)
        else:
            print(why_nothing_drawn(index, output, valid, score, len(target["boxes"])))
        drawn.append(pixels)
    return drawn


def check_arguments(args: Any) -> None:
    """Counts of at least one, a non-negative score, and a PNG to write."""
    for option, value in (("--images", args.images), ("--scale", args.scale)):
        if value < 1:
            raise CommandLineError(f"{option} = {value} must be at least 1")
    if not 0 <= args.score <= 1:
        raise CommandLineError(f"--score = {args.score} must be in [0, 1]")
    if args.out is not None and not args.out.lower().endswith(".png"):
        raise CommandLineError(f"--out {args.out!r} must name a .png file")
    if args.out is not None:
        output_file(args.out, "--out")


def main(argv: Optional[List[str]] = None) -> str:
    """Draw --images validation images with their predictions into one PNG; return its path."""
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True, metavar="FILE", help="YAML config file of a detector")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint (.pth) to draw")
    parser.add_argument("--out", metavar="PNG", help="output image (default: OUTPUT_DIR/detections.png)")
    parser.add_argument("--images", type=int, default=8, metavar="N", help="validation images to draw (first N)")
    parser.add_argument("--score", type=float, default=0.4, metavar="S", help="lowest score drawn")
    parser.add_argument("--scale", type=int, default=2, metavar="K", help="enlarge the images K times")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    check_arguments(args)
    cfg = load_config(args.cfg, args.opts)
    validate_cfg(cfg)  # checked before the weights are read, so that a classifier's config fails at once
    out = output_file(args.out or os.path.join(cfg.OUTPUT_DIR, "detections.png"), "--out")
    if task_of(cfg) is not DETECTION:
        raise ConfigError(f"MODEL.NAME = {cfg.MODEL.NAME!r} is not a detector; show_detections draws boxes")
    try:
        _, model, val_set, device = load_trained_model(cfg, args.weights)
    finally:
        shutdown_distributed()
    images = draw_predictions(model, val_set, list(range(min(args.images, len(val_set)))), args.score, device,
                              args.scale)
    grid = make_grid([image.float() for image in images], nrow=4, padding=4, pad_value=255).to(torch.uint8)
    write_output(out, lambda f: to_pil_image(grid).save(f, format="PNG"), "--out")
    print(f"Wrote {out}")
    return out


if __name__ == "__main__":
    sys.exit(run(main))
