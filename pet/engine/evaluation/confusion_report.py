"""The confusion matrix of a run's final evaluation, written into OUTPUT_DIR by rank 0: `confusion_matrix.png` (the
picture) and `confusion_matrix.json` (the numbers behind it, with each class's accuracy and image count)."""
import json
import logging
import math
from typing import Any, List

import torch

from pet.engine.evaluation.classification import per_class_accuracy
from pet.engine.loop.hooks import EvalHook, HookBase
from pet.engine.persistence.safe_files import atomic_write, safe_output_path

logger = logging.getLogger(__name__)

REPORT_FILES = ("confusion_matrix.png", "confusion_matrix.json")
CELL_TEXT_UP_TO = 30  # classes whose cells get their count written in; beyond, the text would be unreadable
TICK_NAMES_UP_TO = 60  # classes whose names label the axes; beyond, matplotlib's numbered ticks
LARGEST_SIDE = 16.0  # inches (1600 pixels at 100 dpi): a 1000-class matrix gets about a pixel per cell


def row_shares(confusion: torch.Tensor) -> torch.Tensor:
    """Each true class's row as shares of its images (rows without images stay 0), so that a rare class's
    mistakes show as clearly as a common one's."""
    counts = confusion.double()
    images = counts.sum(dim=1, keepdim=True)
    return counts / images.clamp(min=1)


def plot_confusion_matrix(confusion: torch.Tensor, names: List[str], path: str, title: str) -> None:
    """Write the matrix as a PNG at `path` (atomically): colour is the share of the true class's images, with the
    counts written in the cells up to `CELL_TEXT_UP_TO` classes and names on the axes up to `TICK_NAMES_UP_TO`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend or figure state
    from matplotlib.figure import Figure

    classes = confusion.shape[0]
    shares = row_shares(confusion).numpy()
    side = min(max(4.0, 0.45 * classes + 2.5), LARGEST_SIDE)
    figure = Figure(figsize=(side + 1.5, side), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class's images")
    axes.set(xlabel="predicted class", ylabel="true class", title=title)
    if classes <= TICK_NAMES_UP_TO:
        short = [name if len(name) <= 20 else name[:19] + "…" for name in names]
        axes.set_xticks(range(classes), short, rotation=90 if max(map(len, short)) > 3 else 0, fontsize=8)
        axes.set_yticks(range(classes), short, fontsize=8)
    if classes <= CELL_TEXT_UP_TO:
        write_counts(axes, confusion, shares)
    atomic_write(path, lambda file: figure.savefig(file, format="png"))


def write_counts(axes: Any, confusion: torch.Tensor, shares: Any) -> None:
    """The count of every non-empty cell, white on the dark cells."""
    size = 9 if confusion.shape[0] <= 12 else 6
    for (true, predicted), count in zip(torch.nonzero(confusion).tolist(), confusion[confusion > 0].tolist()):
        axes.text(predicted, true, str(count), ha="center", va="center", fontsize=size,
                  color="white" if shares[true, predicted] > 0.5 else "black")


def write_confusion_json(confusion: torch.Tensor, names: List[str], iteration: int, path: str) -> None:
    """The matrix (rows: true class, columns: predicted), the class names and each class's image count and
    accuracy (%; null without images) as JSON at `path` (atomically)."""
    accuracy = [None if math.isnan(value) else round(value, 4) for value in per_class_accuracy(confusion)]
    data = {"iteration": iteration, "classes": names, "images": confusion.sum(dim=1).tolist(),
            "accuracy": accuracy, "confusion_matrix": confusion.tolist()}
    atomic_write(path, lambda file: file.write(json.dumps(data).encode("utf-8")))


class ConfusionReport(HookBase):
    """After the final evaluation (the run's end, or where early stopping ended it), writes the confusion matrix of
    the evaluated weights (not of their EMA) as `confusion_matrix.png` and `.json` into `output_dir`. Registered
    on rank 0 after `eval_hook`; a task whose results hold no matrix (detection) writes nothing."""

    def __init__(self, eval_hook: EvalHook, output_dir: str) -> None:
        self.eval_hook = eval_hook
        self.output_dir = output_dir

    def before_train(self) -> None:
        for name in REPORT_FILES:
            safe_output_path(self.output_dir, name)  # a link there stops the run now, not after it trained

    def after_train(self) -> None:
        trainer, hook = self.trainer, self.eval_hook
        final = trainer.failure is None and trainer.iter + 1 >= trainer.max_iter and hook.evaluated_at == trainer.iter
        confusion = getattr(hook.results, "confusion", None)
        if not final or confusion is None:
            return
        try:
            self.write(confusion, hook.results.class_names, trainer.iter, hook.results.get("val/accuracy", math.nan))
        except Exception as e:  # a picture is not worth the run: the hooks after this one must still close up
            logger.warning("Could not write the confusion matrix into %s: %s", self.output_dir, e)

    def write(self, confusion: torch.Tensor, names: List[str], iteration: int, accuracy: float) -> None:
        """Both files of the evaluation at `iteration`."""
        png, json_path = (safe_output_path(self.output_dir, name) for name in REPORT_FILES)
        title = f"Confusion matrix at iteration {iteration} (top-1 {accuracy:.2f}%)"
        plot_confusion_matrix(confusion, names, png, title)
        write_confusion_json(confusion, names, iteration, json_path)
        logger.info("Confusion matrix of the final evaluation: %s (numbers and per-class accuracy: %s)", png,
                    json_path)
