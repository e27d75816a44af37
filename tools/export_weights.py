"""Export a checkpoint's model weights as a plain state dict: `python tools/export_weights.py --weights CKPT
--out FILE.pth [--ema]` (`--ema`: the weight average of a run with SOLVER.EMA.ENABLED). CKPT is a `.pth` file or
the checkpoint folder of an FSDP run, whose shards are consolidated into full tensors.

The file holds only `{parameter or buffer name: tensor}`, as torchvision's weight files do: no optimizer, no
iteration, no config. It loads with `model.load_state_dict(torch.load(FILE, weights_only=True))`.
"""
import sys
from typing import List, Optional

import torch

from pet.engine.persistence.checkpointer import checkpoint_weights
from pet.engine.runs.cli import ArgumentParser, output_file, run, write_output


def main(argv: Optional[List[str]] = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, metavar="CKPT",
                        help="a checkpoint of this project (.pth, or an FSDP run's folder)")
    parser.add_argument("--out", required=True, metavar="FILE", help="where the state dict goes (.pth)")
    parser.add_argument("--ema", action="store_true", help="export the weight average instead of the weights")
    args = parser.parse_intermixed_args(argv)
    output_file(args.out, "--out", inputs=[args.weights])
    state = checkpoint_weights(args.weights, args.ema, project_only=True)  # folders: consolidated from the shards
    write_output(args.out, lambda f: torch.save(state, f), "--out")
    print(f"Wrote {args.out}: {len(state)} tensors{' (the weight average)' if args.ema else ''}")


if __name__ == "__main__":
    sys.exit(run(main))
