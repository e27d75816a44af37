"""Evaluate a checkpoint: `python tools/test_net.py --cfg FILE --weights CKPT [--ema] [KEY VALUE ...]`."""
import sys
from typing import List, Optional

from pet.engine.distributed.process_group import shutdown_distributed
from pet.engine.runs.cli import ArgumentParser, load_config, run
from pet.engine.runs.runner import evaluate


def main(argv: Optional[List[str]] = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True, metavar="FILE", help="YAML config file")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint to evaluate (.pth, or an FSDP run's folder)")
    parser.add_argument("--ema", action="store_true", help="evaluate the checkpoint's weight average (SOLVER.EMA)")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides")
    args = parser.parse_intermixed_args(argv)  # options may come before, between or after KEY VALUE pairs
    cfg = load_config(args.cfg, args.opts)
    try:
        results = evaluate(cfg, args.weights, ema=args.ema)
    finally:
        shutdown_distributed()
    print(" ".join(f"{name}={value:.4f}" for name, value in results.items()))


if __name__ == "__main__":
    sys.exit(run(main))
