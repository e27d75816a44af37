"""Export a checkpoint's model: `python tools/export_weights.py --weights CKPT --out FILE [--format F] [--ema]`.

CKPT is a checkpoint of this project: a `.pth` file or the checkpoint folder of an FSDP run, whose shards are
consolidated into full tensors. `--ema` exports the weight average of a run with SOLVER.EMA.ENABLED. --format:

- `pet` (default): `{parameter or buffer name: tensor}` under this project's names (`backbone.*`, `head.*`), no
  optimizer, iteration or config; it loads into `pet.models.build_model(cfg)` or as MODEL.WEIGHTS.
- `torchvision`: a classifier's state dict under torchvision's names:
  `torchvision.models.<MODEL.NAME>(num_classes=N).load_state_dict(torch.load(FILE, weights_only=True))` takes it
  (ViTs: with `image_size=S` too; the exact call is printed). Refused for detectors, user models (MODEL.NAME an
  import path), and runs whose MODEL.SMALL_INPUT True or MODEL.NORM GN / FROZEN_BN changed the architecture,
  since torchvision's model would differ.
- `torchscript`: the whole model in eval mode, `torch.jit.script`ed (traced on a batch of the config's image size
  where scripting fails or computes otherwise): `torch.jit.load(FILE)`. A scripted detector returns
  `(losses, detections)`, as torchvision's detectors do under TorchScript.
- `onnx`: the whole classifier (or user model) in eval mode via `torch.onnx.export`, input `images` with a dynamic
  batch size at the config's image size, output `logits`; needs `pip install -e .[onnx]`. Not for detectors.

The formats other than `pet` build the model from the config the checkpoint stores, and take images
preprocessed as the run's validation data are (same size, same normalisation).
"""
import contextlib
import importlib
import io
import sys
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
import torchvision
from torch import nn

from pet.data.build import image_size
from pet.engine.persistence.checkpointer import checkpoint_weights, read_checkpoint_metadata
from pet.engine.runs.cli import ArgumentParser, CommandLineError, load_config_text, output_file, run, write_output
from pet.engine.runs.runner import another_model
from pet.errors import CheckpointError
from pet.models import build_model, model_task
from pet.models.classification import HEAD_ATTRIBUTES

FORMATS = ("pet", "torchvision", "torchscript", "onnx")
# What torch.onnx.export (the torch.export-based exporter, torch's default) imports; the `onnx` extra installs them.
ONNX_MODULES = ("onnx", "onnxscript")
# MODEL.NORM values that replace torchvision's BatchNorm2d layers (SyncBN keeps their parameters and buffers).
REPLACING_NORMS = ("GN", "FROZEN_BN")


def check_onnx_installed() -> None:
    """A `CommandLineError` naming the extra to install when a package torch.onnx.export needs cannot be
    imported; checked before any checkpoint is read."""
    for module in ONNX_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as e:
            why = "is not installed" if isinstance(e, ModuleNotFoundError) and e.name == module \
                else f"cannot be imported ({' '.join(str(e).split())[:200]})"
            raise CommandLineError(f"--format onnx needs the package {module}, which {why}: pip install -e .[onnx]") \
                from None


def stored_config(weights: str, export_format: str) -> Any:
    """The config that the checkpoint `weights` stores: what the formats other than pet build the model from."""
    text = read_checkpoint_metadata(weights).get("config")
    if text is None:
        raise CheckpointError(f"{weights} stores no config (a checkpoint written without one), and --format "
                              f"{export_format} builds the model from it: use --format pet")
    return load_config_text(text, [], weights)


def refuse_unsupported(cfg: Any, export_format: str) -> None:
    """One `CommandLineError` for a model the format cannot write: torchvision's names for anything but a
    torchvision classifier whose architecture the run kept, ONNX for a detector."""
    name, task = cfg.MODEL.NAME, model_task(cfg.MODEL.NAME)
    if export_format == "onnx" and task == "detection":
        raise CommandLineError(f"--format onnx: MODEL.NAME = {name!r} is a detector, whose data-dependent box "
                               "post-processing torch.onnx's exporter cannot capture; use --format torchscript")
    if export_format != "torchvision":
        return
    if task != "classification":
        what = "a detector" if task == "detection" else "your own model (an import path), which torchvision has not"
        raise CommandLineError(f"--format torchvision writes the state dict of a torchvision classifier, and "
                               f"MODEL.NAME = {name!r} is {what}: use --format torchscript or pet")
    if cfg.MODEL.SMALL_INPUT:
        raise CommandLineError(f"--format torchvision: the checkpoint's run had MODEL.SMALL_INPUT True, which gave "
                               f"{name} a stride-1 stem (ResNets: a 3x3 conv1 and no max pool), so torchvision's "
                               f"{name} would differ; export the whole model with --format torchscript or onnx")
    if cfg.MODEL.NORM.upper() in REPLACING_NORMS:
        raise CommandLineError(f"--format torchvision: the checkpoint's run had MODEL.NORM = {cfg.MODEL.NORM!r}, "
                               f"which replaced the BatchNorm2d layers of {name}, so torchvision's {name} would "
                               "differ; export the whole model with --format torchscript or onnx")


def trained_model(cfg: Any, state: Dict[str, torch.Tensor], weights: str) -> nn.Module:
    """The model of the checkpoint's config, on the CPU in eval mode, holding `state`."""
    model = build_model(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(another_model(model, state, weights, cfg)) from None
    return model.eval()


def torchvision_kwargs(cfg: Any) -> Dict[str, Any]:
    """The arguments of `torchvision.models.<MODEL.NAME>` that build the run's classifier (as build_classifier
    passes them)."""
    kwargs: Dict[str, Any] = {"num_classes": cfg.MODEL.NUM_CLASSES}
    if cfg.MODEL.NAME.startswith("vit_"):
        kwargs["image_size"] = image_size(cfg) or 224  # 0: a user's data set, built at torchvision's own size
    return kwargs


def torchvision_state(cfg: Any, state: Dict[str, torch.Tensor], weights: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """`state` under the names of torchvision's classifier, and the call that builds the model it loads into;
    checked by loading it into that model."""
    kwargs = torchvision_kwargs(cfg)
    reference = torchvision.models.get_model(cfg.MODEL.NAME, weights=None, **kwargs)
    # The attribute split_backbone_and_head moved into `head`: the first of HEAD_ATTRIBUTES the model has.
    head = next(a for a in HEAD_ATTRIBUTES if isinstance(getattr(reference, a, None), nn.Module))
    renamed = {}
    for key, tensor in state.items():
        part, _, rest = key.partition(".")
        renamed[rest if part == "backbone" else f"{head}.{rest}" if part == "head" else key] = tensor
    try:
        reference.load_state_dict(renamed)
    except RuntimeError:
        raise CheckpointError(f"--format torchvision: {another_model(reference, renamed, weights, None)}") from None
    call = f"torchvision.models.{cfg.MODEL.NAME}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    return renamed, call


def example_input(cfg: Any) -> Any:
    """A batch like the run's validation images (3 channels at the config's image size; 224 when the data set keeps
    its images' sizes): two images, a list of them for a detector."""
    side = image_size(cfg) or 224
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, side, side, generator=generator)
    return list(images) if model_task(cfg.MODEL.NAME) == "detection" else images


def same_outputs(ours: Any, theirs: Any) -> bool:
    """Whether two model outputs (tensors, or the dicts / lists / tuples of them a detector returns) agree."""
    if isinstance(ours, torch.Tensor) and isinstance(theirs, torch.Tensor):
        return ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(same_outputs(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)):
        return len(ours) == len(theirs) and all(same_outputs(a, b) for a, b in zip(ours, theirs))
    return False


@contextlib.contextmanager
def jit_allowed() -> Any:
    """torch.jit warns that it is deprecated on every call; the user asked for TorchScript by name, so the
    warnings only repeat what the README says."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*in scripting")  # a detector's (losses, detections): documented
        yield


@torch.no_grad()
def torchscript_module(cfg: Any, model: nn.Module) -> Tuple[torch.jit.ScriptModule, str]:
    """The model scripted, or traced on `example_input` where scripting fails or computes otherwise (a scripted
    GoogLeNet returns its auxiliary outputs too); either is checked against the model on that input. Returns the
    module and how it was made."""
    example = example_input(cfg)
    expected = model(example)
    detector = model_task(cfg.MODEL.NAME) == "detection"
    failures = []
    with jit_allowed():
        try:
            scripted = torch.jit.script(model)
            got = scripted(example)
            # Under TorchScript a torchvision detector returns (losses, detections), in eval mode no losses.
            if same_outputs(expected, got[1] if detector and isinstance(got, tuple) else got):
                return scripted, "scripted"
            failures.append("its scripted outputs differ from the model's")
        except Exception as e:  # TorchScript rejects much of Python; the reason is reported if tracing fails too
            failures.append(f"script: {' '.join(str(e).split())[:200]}")
        if not detector:  # a detector's output depends on its data: a trace would freeze the box counts
            try:
                traced = torch.jit.trace(model, example)
                if same_outputs(expected, traced(example)):
                    return traced, f"traced on a batch of shape {tuple(example.shape)}"
                failures.append("its traced outputs differ from the model's")
            except Exception as e:
                failures.append(f"trace: {' '.join(str(e).split())[:200]}")
    raise CommandLineError(f"--format torchscript: MODEL.NAME = {cfg.MODEL.NAME!r} cannot be exported: "
                           f"{'; '.join(failures)}")


@torch.no_grad()
def onnx_bytes(cfg: Any, model: nn.Module) -> Tuple[bytes, str]:
    """The model as an ONNX file's bytes (input `images` with a dynamic batch size, output `logits`), and the input
    shape it takes."""
    example = example_input(cfg)
    shape = f"(batch, {', '.join(str(n) for n in example.shape[1:])})"
    progress = io.StringIO()  # torch.onnx prints its steps and, on failure, whole graphs: the error line says enough
    try:
        with contextlib.redirect_stdout(progress), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                        output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
    except torch.onnx.OnnxExporterError as e:
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise CommandLineError(f"--format onnx: MODEL.NAME = {cfg.MODEL.NAME!r} cannot be exported: "
                               f"{' '.join(first.split())[:200]}; try --format torchscript") from None
    try:
        return program.model_proto.SerializeToString(), shape
    except ValueError as e:  # protobuf's 2 GB limit on one message
        raise CommandLineError(f"--format onnx: the model is too large for one ONNX file ({e})") from None


def main(argv: Optional[List[str]] = None) -> None:
    """Read --weights, convert as --format says, write --out atomically; nothing is written on an error."""
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, metavar="CKPT",
                        help="a checkpoint of this project (.pth, or an FSDP run's folder)")
    parser.add_argument("--out", required=True, metavar="FILE", help="where the export goes")
    parser.add_argument("--format", choices=FORMATS, default="pet",
                        help="pet: state dict under this project's names; torchvision: a classifier's state dict "
                             "under torchvision's names; torchscript: the model for torch.jit.load; onnx: the model "
                             "for ONNX runtimes (pip install -e .[onnx])")
    parser.add_argument("--ema", action="store_true", help="export the weight average instead of the weights")
    args = parser.parse_intermixed_args(argv)
    output_file(args.out, "--out", inputs=[args.weights])
    if args.format == "onnx":
        check_onnx_installed()
    state = checkpoint_weights(args.weights, args.ema, project_only=True)  # folders: consolidated from the shards
    average = " (the weight average)" if args.ema else ""
    if args.format == "pet":
        write_output(args.out, lambda f: torch.save(state, f), "--out")
        print(f"Wrote {args.out}: {len(state)} tensors{average}")
        return
    cfg = stored_config(args.weights, args.format)
    refuse_unsupported(cfg, args.format)
    if args.format == "torchvision":
        renamed, call = torchvision_state(cfg, state, args.weights)
        write_output(args.out, lambda f: torch.save(renamed, f), "--out")
        print(f"Wrote {args.out}: {len(renamed)} tensors{average} for {call}.load_state_dict(torch.load("
              f"{args.out!r}, weights_only=True))")
        return
    model = trained_model(cfg, state, args.weights)
    if args.format == "torchscript":
        module, how = torchscript_module(cfg, model)
        with jit_allowed():
            write_output(args.out, lambda f: torch.jit.save(module, f), "--out")
        print(f"Wrote {args.out}: {cfg.MODEL.NAME}{average}, {how}; load it with torch.jit.load({args.out!r})")
        return
    data, shape = onnx_bytes(cfg, model)
    write_output(args.out, lambda f: f.write(data), "--out")
    print(f"Wrote {args.out}: {cfg.MODEL.NAME}{average} as ONNX; input 'images' of shape {shape}, output 'logits'")


if __name__ == "__main__":
    sys.exit(run(main))
