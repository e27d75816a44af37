"""Evaluate a checkpoint: `python tools/test_net.py --weights CKPT [--cfg FILE] [--ema] [KEY VALUE ...]`.

Without --cfg the config is the one the checkpoint stores (its run's merged config); KEY VALUE overrides apply on
top of either. A plain state dict stores none: give its config with --cfg.
"""
import os
import sys
from typing import Any, List, Optional

from pet.engine.distributed.process_group import shutdown_distributed
from pet.engine.persistence.checkpointer import read_checkpoint_metadata
from pet.engine.runs.cli import ArgumentParser, CommandLineError, load_config, load_config_text, run
from pet.engine.runs.runner import evaluate


def checkpoint_config(weights: str, overrides: List[str]) -> Any:
    """The config stored in the checkpoint `weights` with `overrides` on top; a checkpoint that stores none (a
    plain state dict) is a `CommandLineError` asking for --cfg."""
    text = read_checkpoint_metadata(weights).get("config")  # a missing or unreadable file: a CheckpointError
    if text is None:
        raise CommandLineError(f"--weights {weights} stores no config (a plain state dict, or a file that is not a "
                               "checkpoint of this project): give the config it was trained with, --cfg FILE")
    return load_config_text(text, overrides, weights)


def main(argv: Optional[List[str]] = None) -> None:
    """Evaluate --weights on the validation set of its config; print `metric=value ...` on the last line."""
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", metavar="FILE", help="YAML config file (default: the config the checkpoint stores)")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint to evaluate (.pth, or an FSDP run's folder)")
    parser.add_argument("--ema", action="store_true", help="evaluate the checkpoint's weight average (SOLVER.EMA)")
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides")
    args = parser.parse_intermixed_args(argv)  # options may come before, between or after KEY VALUE pairs
    if args.cfg is not None:
        cfg = load_config(args.cfg, args.opts)
    else:
        cfg = checkpoint_config(args.weights, args.opts)
        if os.environ.get("RANK", "0") == "0":  # under torchrun: said once
            print(f"Config: the one stored in {args.weights} (MODEL.NAME = {cfg.MODEL.NAME}, DATA.DATASET = "
                  f"{cfg.DATA.DATASET})")
    try:
        results = evaluate(cfg, args.weights, ema=args.ema)
    finally:
        shutdown_distributed()
    print(" ".join(f"{name}={value:.4f}" for name, value in results.items()))


if __name__ == "__main__":
    sys.exit(run(main))
