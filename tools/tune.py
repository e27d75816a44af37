"""Search hyperparameters with Optuna: `python tools/tune.py --cfg FILE --space SPACE.yaml --trials N [KEY VALUE ...]`.

Each trial is a normal run of the config with values drawn from the space (`KEY: {log_uniform: [lo, hi]}`,
`{uniform: [lo, hi]}`, `{int: [lo, hi]}`, `{choice: [...]}` over config keys) in OUTPUT_DIR/trial_<k>/. Trials that
fall behind the median of earlier ones at an evaluation (TRAIN.EVAL_PERIOD) are pruned. The study lives in
OUTPUT_DIR/study.db (or --storage): running the same command again continues it. At the end: OUTPUT_DIR/
best_config.yaml (train it with tools/train_net.py --cfg), optimization_history.png and param_importances.png.
Distributed: `torchrun --nproc_per_node N tools/tune.py ...` runs each trial on N processes.
"""
import os
import sys
from typing import List, Optional

from pet.engine.distributed.process_group import shutdown_distributed
from pet.engine.runs.cli import (PREEMPTED_EXIT_CODE, ArgumentParser, CommandLineError, load_config, output_file,
                                 run, say_error)
from pet.engine.runs.tuning.study import OUTPUT_FILES, PRUNERS, Search, tune
from pet.errors import Preempted


def main(argv: Optional[List[str]] = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True, metavar="FILE", help="YAML config file")
    parser.add_argument("--space", required=True, metavar="SPACE.yaml", help="YAML search space over config keys")
    parser.add_argument("--trials", required=True, type=int, metavar="N", help="trials to run now (a continued "
                        "study keeps its earlier ones)")
    parser.add_argument("--storage", default="", metavar="URL", help="the study's database, any URL Optuna takes "
                        "(default: sqlite in OUTPUT_DIR/study.db)")
    parser.add_argument("--pruner", default="median", choices=PRUNERS, help="stop trials below the median of "
                        "earlier ones at an evaluation, or never")
    parser.add_argument("--metric", default="", metavar="NAME", help="the evaluation result to optimise "
                        "(default: TRAIN.BEST_METRIC, else val/accuracy or val/mAP); lowest is best for a loss")
    parser.add_argument("--study", default="", metavar="NAME", help="the study's name (default: OUTPUT_DIR's "
                        "folder name)")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides, e.g. "
                        "SOLVER.SCHEDULER.TOTAL_ITERS 200")
    args = parser.parse_intermixed_args(argv)
    if args.trials < 1:
        raise CommandLineError(f"--trials {args.trials}: give at least 1")
    cfg = load_config(args.cfg, args.opts)
    for name in OUTPUT_FILES:  # checked before any trial runs, not after the last one
        output_file(os.path.join(cfg.OUTPUT_DIR, name), "OUTPUT_DIR", [args.cfg, args.space])
    try:
        tune(cfg, Search(args.space, args.trials, args.storage, args.pruner, args.metric, args.study))
    except Preempted as e:
        # The stopped trial is FAIL in the study; there is nothing to --resume: the same command continues it.
        say_error(f"{'error: interrupted: ' if e.signal_name == 'SIGINT' else ''}a trial was stopped by "
                  f"{e.signal_name} and is marked failed; run the same command again to continue the study")
        raise SystemExit(130 if e.signal_name == "SIGINT" else PREEMPTED_EXIT_CODE) from None
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    sys.exit(run(main))
