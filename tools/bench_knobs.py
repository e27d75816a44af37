"""Speed knobs end to end: `tools/train_net.py` eager, with MODEL.CHANNELS_LAST, with TRAIN.COMPILE, and with both.

    python tools/bench_knobs.py [--rounds 2] [--jobs digits folder shapes] [--out FILE]

Jobs (shortened so that a round fits in minutes on 2 CPU cores; every other key as shipped):
- digits: the default config `cfgs/digits/resnet18_sgd_step.yaml` (8x8 images, batch 32), 200 updates;
- folder: an image-folder job at 32x32: scikit-learn's digits written as 32x32 PNG files into train/ and val/
  class folders (real images decoded by the loader, 2 workers), ResNet-18, batch 32, 100 updates;
- shapes: `cfgs/shapes/fcos_resnet18_sgd_cosine.yaml` (FCOS, images of varying size), 20 updates.

Every variant runs in a fresh process, in rotation over the rounds, so machine noise falls on all alike. Per-update
times are the medians of the `time` rows of metrics.json (compile's first update is logged apart and is not one of
them); whole-run times are the processes' wall times, start-up and compiling included (torch's compile cache on disk
is warm after the first round, as it is for a user's second run). The last column is the final evaluation:
top-1 accuracy (%) of the classifiers, COCO mAP (%) of the detector.
"""
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(ROOT, "tools", "train_net.py")
FOLDER_SIZE = 32


@dataclass(frozen=True)
class Job:
    cfg: str
    overrides: Tuple[str, ...]
    metric: str


JOBS = {
    "digits": Job("cfgs/digits/resnet18_sgd_step.yaml",
                  ("SOLVER.SCHEDULER.TOTAL_ITERS", "200", "SOLVER.SCHEDULER.STEPS", "(140, 180)"), "val/accuracy"),
    "folder": Job("cfgs/digits/resnet18_sgd_step.yaml",
                  ("DATA.DATASET", "image_folder", "DATA.IMAGE_SIZE", str(FOLDER_SIZE), "DATA.NUM_WORKERS", "2",
                   "SOLVER.SCHEDULER.TOTAL_ITERS", "100", "SOLVER.SCHEDULER.STEPS", "(70, 90)",
                   "SOLVER.SCHEDULER.WARM_UP_ITERS", "10"), "val/accuracy"),
    "shapes": Job("cfgs/shapes/fcos_resnet18_sgd_cosine.yaml",
                  ("SOLVER.SCHEDULER.TOTAL_ITERS", "20", "SOLVER.SCHEDULER.WARM_UP_ITERS", "5"), "val/mAP"),
}
KNOBS = {"eager": (), "channels_last": ("MODEL.CHANNELS_LAST", "True"), "compile": ("TRAIN.COMPILE", "True"),
         "both": ("MODEL.CHANNELS_LAST", "True", "TRAIN.COMPILE", "True")}


def write_digits_folder(root: str, size: int = FOLDER_SIZE) -> str:
    """scikit-learn's digits (the same train/val split as DATA.DATASET digits) as `size`-pixel grey PNG files in
    `root/{train,val}/<digit>/`; return `root`."""
    from PIL import Image

    from pet.data.digits import DigitsDataset

    for split in ("train", "val"):
        data = DigitsDataset(split)
        for index in range(len(data)):
            image, label = data[index]
            folder = os.path.join(root, split, str(int(label)))
            os.makedirs(folder, exist_ok=True)
            grey = Image.fromarray(((image[0].numpy() + 1) / 2 * 255).round().astype("uint8"), mode="L")
            grey.resize((size, size), Image.NEAREST).convert("RGB").save(os.path.join(folder, f"{index}.png"))
    return root


def run_knob(job: Job, knob: str, output_dir: str, folder: str, shapes_root: str) -> Tuple[float, List[float], float]:
    """(wall seconds, seconds of each timed update, final metric) of one job with one knob, in a fresh process."""
    command = [sys.executable, TRAIN_NET, "--cfg", os.path.join(ROOT, job.cfg), *job.overrides, *KNOBS[knob],
               "OUTPUT_DIR", output_dir, "DATA.ROOT", folder if "image_folder" in job.overrides else shapes_root]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{knob} failed:\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}")
    if "runs eagerly" in result.stdout + result.stderr:
        raise RuntimeError(f"{knob}: torch.compile fell back to eager; the row would not measure compile")
    rows = [json.loads(line) for line in open(os.path.join(output_dir, "metrics.json"))]
    metric = [row[job.metric] for row in rows if job.metric in row][-1]
    return wall, [row["time"] for row in rows if "time" in row], metric


def markdown(results: Dict[str, Dict[str, List[Tuple[float, List[float], float]]]], rounds: int,
             command: str) -> str:
    lines = [f"`{command}` on {datetime.date.today().isoformat()}, {rounds} rounds in fresh processes.", "",
             "| job | knobs | per update ms (median) | whole run s (median) | update / eager | run / eager | "
             "final accuracy or mAP (%) |", "|---|---|---|---|---|---|---|"]
    for job, knobs in results.items():
        update = {k: statistics.median([statistics.median(t) for _, t, _ in runs]) for k, runs in knobs.items()}
        wall = {k: statistics.median([w for w, _, _ in runs]) for k, runs in knobs.items()}
        for knob, runs in knobs.items():
            metrics = "/".join(f"{m:.1f}" for _, _, m in runs)
            lines.append(f"| {job} | {knob} | {update[knob] * 1e3:.1f} | {wall[knob]:.1f} | "
                         f"{update[knob] / update['eager']:.3f} | {wall[knob] / wall['eager']:.3f} | {metrics} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> str:
    import argparse

    from pet.engine.runs.cli import write_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", nargs="+", choices=sorted(JOBS), default=list(JOBS))
    parser.add_argument("--knobs", nargs="+", choices=list(KNOBS), default=list(KNOBS))
    parser.add_argument("--out", default=os.path.join("output", "benchmarks-knobs.md"))
    args = parser.parse_args(argv)
    knobs = ["eager"] + [k for k in args.knobs if k != "eager"]
    results: Dict[str, Dict[str, List[Tuple[float, List[float], float]]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder, shapes_root = os.path.join(scratch, "digits32"), os.path.join(scratch, "shapes")
        if "folder" in args.jobs:
            write_digits_folder(folder)
        if "shapes" in args.jobs:  # the shapes set is written once, before timing
            from pet.data import build_dataset
            from pet.engine.runs.cli import load_config

            shapes = JOBS["shapes"]
            build_dataset(load_config(os.path.join(ROOT, shapes.cfg), ["DATA.ROOT", shapes_root]), "train")
        for name in args.jobs:
            results[name] = {k: [] for k in knobs}
            for round_index in range(args.rounds):
                shift = round_index % len(knobs)
                for knob in knobs[shift:] + knobs[:shift]:
                    output_dir = os.path.join(scratch, f"{name}-{knob}-{round_index}")
                    wall, times, metric = run_knob(JOBS[name], knob, output_dir, folder, shapes_root)
                    results[name][knob].append((wall, times, metric))
                    print(f"  {name} {knob}: {statistics.median(times) * 1e3:.1f} ms/update, {wall:.1f} s, "
                          f"{metric:.2f}", flush=True)
    report = markdown(results, args.rounds,
                      "python tools/bench_knobs.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    return write_report(args.out, report)


if __name__ == "__main__":
    main()
