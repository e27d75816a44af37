"""Draw a detector's predictions on validation images: `python tools/show_detections.py --cfg FILE --weights CKPT`.

Each image shows the ground truth in white and the detections scoring at least --score in their category's
colour, labelled with the category and score; the images are tiled into one PNG (default OUTPUT_DIR/detections.png).
"""
import os
import sys
from typing import Any, List, Optional

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


@torch.no_grad()
def draw_predictions(model: torch.nn.Module, dataset: CocoDetection, indices: List[int], score: float,
                     device: torch.device, scale: int = 1) -> List[torch.Tensor]:
    """One uint8 image per index, enlarged `scale` times, with the ground truth (white) and the detections
    scoring >= `score`."""
    model.eval()
    names = dataset.category_names
    drawn = []
    for index in indices:
        image, target = dataset[index]
        output = model([image.to(device)])[0]
        keep = (output["scores"] >= score) & (output["labels"] >= 1) & (output["labels"] <= len(names))
        boxes, labels, scores = output["boxes"][keep].cpu(), output["labels"][keep].tolist(), output["scores"][keep]
        pixels = (image * 255).round().to(torch.uint8).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        if len(target["boxes"]):
            pixels = draw_bounding_boxes(pixels, target["boxes"] * scale, colors="white", width=1)
        if len(boxes):
            captions = [f"{names[label - 1]} {s:.2f}" for label, s in zip(labels, scores.tolist())]
            pixels = draw_bounding_boxes(pixels, boxes * scale, captions, width=2,
                                         colors=[COLOURS[(label - 1) % len(COLOURS)] for label in labels])
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
