"""The model's speed knobs, applied in place: channels-last weights (`MODEL.CHANNELS_LAST`) and `torch.compile`
(`TRAIN.COMPILE`, `TRAIN.COMPILE_MODE`).

Both leave the module and its parameter names as they were, so a checkpoint is the same with a knob on or off:
compiling goes through `nn.Module.compile`, which compiles the module's call where it stands, instead of wrapping
it in torch's `OptimizedModule` (whose state dict prefixes every name with `_orig_mod.`). A model that torch cannot
compile runs eagerly from its first call on, after one warning.

    >>> model = torchvision.models.resnet18()
    >>> to_channels_last(model)
    >>> compile_in_place(model, "default")
    >>> list(model.state_dict())[0]
    'conv1.weight'
"""
import logging
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

logger = logging.getLogger(__name__)

COMPILE_PREFIX = "_orig_mod."  # what torch.compile's wrapper adds to every state-dict name
INDUCTOR = "inductor"
DEFAULT_BACKEND = INDUCTOR  # tests take a cheaper one


def to_channels_last(model: nn.Module) -> None:
    """Store every 4-D weight and buffer of `model` channels-last (NHWC); convolutions then produce channels-last
    activations, whatever the layout of their input."""
    model.to(memory_format=torch.channels_last)


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The module inside torch.compile's wrapper (what a builder that compiled its model returns), else `model`."""
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) else model


def strip_compile_prefix(state: dict) -> dict:
    """A state dict without torch.compile's `_orig_mod.` in its names (a checkpoint of a wrapped model, written by
    another tool), so that it loads into the plain module."""
    if not any(COMPILE_PREFIX in name for name in state):
        return state
    return {name.replace(COMPILE_PREFIX, ""): value for name, value in state.items()}


def is_compile_failure(error: BaseException) -> bool:
    """Whether `error` came from torch.compile's tracing or its backend, not from the model's own code run eagerly."""
    return isinstance(error, torch._dynamo.exc.TorchDynamoException)


class EagerFallback:
    """The compiled call of a module that, when compiling fails, warns once and runs the module eagerly from then
    on."""

    def __init__(self, model: nn.Module, compiled: Callable[..., Any]) -> None:
        self.model = model
        self.compiled = compiled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - only compile failures are taken, the rest is raised
            if not is_compile_failure(error):
                raise
            reason = " ".join(str(error).split())[:300]
            logger.warning("TRAIN.COMPILE: torch.compile cannot compile %s (%s: %s); it runs eagerly",
                           type(self.model).__name__, type(error).__name__, reason)
            self.model._compiled_call_impl = None  # nn.Module.__call__ takes the eager path from now on
            return self.model(*args, **kwargs)


def compile_in_place(model: nn.Module, mode: str = "default",
                     backend: Union[str, Callable[..., Any], None] = None) -> None:
    """Compile `model`'s call with torch.compile (`mode` for the inductor backend, the default; `backend` another
    torch.compile backend), keeping the module and its parameter names. Compiling happens at the first call."""
    backend = backend or DEFAULT_BACKEND
    options: dict = {"backend": backend}
    if backend == INDUCTOR:
        options["mode"] = mode
    model.compile(**options)
    model._compiled_call_impl = EagerFallback(model, model._compiled_call_impl)


def is_compiled(model: nn.Module) -> bool:
    """Whether `model` runs through torch.compile (not, or no longer: a failed compile falls back to eager)."""
    return getattr(model, "_compiled_call_impl", None) is not None


def apply_speed_knobs(model: nn.Module, channels_last: bool, compile_mode: Optional[str],
                      backend: Union[str, Callable[..., Any], None] = None) -> None:
    """MODEL.CHANNELS_LAST, then TRAIN.COMPILE with its mode (`compile_mode` None: eager)."""
    if channels_last:
        to_channels_last(model)
    if compile_mode is not None:
        compile_in_place(model, compile_mode, backend)
