"""FSDP2 sharding of a run's model: torch's `fully_shard` per block, then the root (DISTRIBUTED.STRATEGY FSDP).

Each process then holds one shard of every parameter, gradient and optimizer state; a block's parameters are
gathered for its forward and backward only. Parameters keep their names, so param groups, named optimizers and
checkpoints address them exactly as they do an unsharded model.
"""
import logging
from typing import Any, Callable, List, Optional

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

logger = logging.getLogger(__name__)

PARAM_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _children_with_parameters(module: nn.Module) -> List[nn.Module]:
    return [child for child in module.children() if any(p.requires_grad for p in child.parameters())]


def shard_blocks(model: nn.Module) -> List[nn.Module]:
    """The blocks sharded on their own, in forward order: ResNet stages, ViT encoder layers, the stages of
    `features` (Swin, MobileNet, EfficientNet, ...), a detector's backbone body, FPN and heads; none for other
    models (the root alone is then one shard)."""
    backbone = getattr(model, "backbone", model)
    if all(hasattr(backbone, f"layer{i}") for i in range(1, 5)):  # ResNet and its kin
        return [getattr(backbone, f"layer{i}") for i in range(1, 5)]
    encoder = getattr(backbone, "encoder", None)
    if encoder is not None and hasattr(encoder, "layers"):  # VisionTransformer
        return _children_with_parameters(encoder.layers)
    if hasattr(backbone, "features"):
        return _children_with_parameters(backbone.features)
    if hasattr(backbone, "body"):  # torchvision detectors: backbone body + FPN, then the heads
        blocks = [*shard_blocks(backbone.body), getattr(backbone, "fpn", None)]
        blocks += [getattr(model, name, None) for name in ("rpn", "roi_heads", "head")]
        return [block for block in blocks if block is not None and _children_with_parameters(block)]
    return []


def device_mesh(device: torch.device, world_size: int) -> DeviceMesh:
    """The 1-D mesh of all processes, on the run's device type. It is always passed to `fully_shard` explicitly:
    left to guess, FSDP2 moves a CPU model to CUDA on a machine that has a GPU."""
    return init_device_mesh(device.type, (world_size,))


def shard_model(model: nn.Module, mesh: DeviceMesh, reshard_after_forward: bool = True,
                param_dtype: str = "float32") -> nn.Module:
    """Apply `fully_shard` to each of `shard_blocks(model)`, then to the whole model, in place; return it.

    Args:
        model: the unwrapped model, on the mesh's device type, with the same weights on every process.
        mesh: the processes to shard over (`device_mesh`).
        reshard_after_forward: free each block's gathered parameters after its forward pass.
        param_dtype: `float32` or `bfloat16` for the gathered parameters; gradients are reduced in float32.

    Example:
        >>> shard_model(model, device_mesh(torch.device("cpu"), 2))
        >>> optimizer = build_optimizer(model, spec)  # the same groups, over sharded parameters
    """
    policy = MixedPrecisionPolicy(param_dtype=PARAM_DTYPES[param_dtype], reduce_dtype=torch.float32)
    blocks = shard_blocks(model)
    for block in blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    logger.info("FSDP: %d blocks and the root sharded over %d processes (parameters gathered in %s)", len(blocks),
                mesh.size(), param_dtype)
    return model


def rank_0_buffers(model: nn.Module) -> Optional[Callable[[], None]]:
    """A function that gives every process rank 0's buffers (BatchNorm statistics), one broadcast per dtype; None
    with one process or no buffers. FSDP shards parameters only: called after every update (the trainer does),
    it keeps the buffers the same everywhere, as DDP does, where they are averaged, evaluated and saved."""
    buffers = [b for b in model.buffers() if b.numel()]
    if not buffers or torch.distributed.get_world_size() == 1:
        return None
    # In the buffers' order: every process must broadcast the same groups in the same order.
    by_dtype = {dtype: [b for b in buffers if b.dtype == dtype] for dtype in dict.fromkeys(b.dtype for b in buffers)}

    @torch.no_grad()
    def broadcast() -> None:
        for group in by_dtype.values():
            flat = torch.cat([b.reshape(-1) for b in group])
            torch.distributed.broadcast(flat, src=0)
            torch._foreach_copy_(group, [part.view_as(b) for part, b in zip(flat.split([b.numel() for b in group]),
                                                                              group)])
    return broadcast


def is_sharded(model: Any) -> bool:
    """Whether `model` was sharded by `shard_model`."""
    return any(isinstance(p, torch.distributed.tensor.DTensor) for p in model.parameters())
