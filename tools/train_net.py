"""Train a model as a config says: `python tools/train_net.py --cfg FILE [KEY VALUE ...] [--resume] [--dry-run]`.

Distributed: `torchrun --nproc_per_node N tools/train_net.py --cfg FILE ...` (gloo on CPU, nccl on GPU).
"""
import sys
from typing import List, Optional

from pet.engine.distributed.process_group import shutdown_distributed
from pet.engine.runs.cli import ArgumentParser, load_config, run
from pet.engine.runs.dry_run import describe_run
from pet.engine.runs.runner import train


def main(argv: Optional[List[str]] = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True, metavar="FILE", help="YAML config file")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in OUTPUT_DIR")
    parser.add_argument("--dry-run", action="store_true", help="print the merged config, the data, the parameter "
                        "groups and the schedule, then stop without training or writing anything")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides, e.g. SOLVER.OPTIMIZER.BASE_LR 0.1")
    args = parser.parse_intermixed_args(argv)  # options may come before, between or after KEY VALUE pairs
    cfg = load_config(args.cfg, args.opts)
    try:
        if args.dry_run:
            print(describe_run(cfg))
            return
        train(cfg, resume=args.resume)
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    sys.exit(run(main))
