"""Layer ids for layer-wise lr decay of torchvision ViT and Swin backbones (BEiT, MAE, Swin fine-tuning).

A parameter at layer i of L gets lr x RATE^(L - i): the patch / position embeddings are layer 0, transformer
block j is layer j + 1, and everything after the last block (final norm, head) is layer L = blocks + 1. In Swin,
a patch-merging layer belongs with the last block before it.
"""
import re
from typing import Dict, List, Optional

from torch import nn

_VIT_BLOCK = re.compile(r"(?:^|\.)encoder\.layers\.encoder_layer_(\d+)\.")
_VIT_EMBED = re.compile(r"(?:^|\.)(?:conv_proj\.|class_token$|encoder\.pos_embedding$)")
_SWIN_STAGE = re.compile(r"(?:^|\.)features\.(\d+)\.")


def _vit_layers(names: List[str]) -> Optional[Dict[str, int]]:
    blocks = {int(m.group(1)) for n in names for m in [_VIT_BLOCK.search(n)] if m}
    if not blocks:
        return None
    last = max(blocks) + 2
    ids = {}
    for name in names:
        block = _VIT_BLOCK.search(name)
        ids[name] = int(block.group(1)) + 1 if block else 0 if _VIT_EMBED.search(name) else last
    return ids


def _swin_layers(model: nn.Module, names: List[str]) -> Optional[Dict[str, int]]:
    prefix = next((n[: n.index("features.")] for n in names if "features.0." in n), None)
    if prefix is None:
        return None
    features = model.get_submodule(prefix + "features")
    # Stage i of `features` holds blocks when it is a Sequential of SwinTransformerBlocks.
    first_layer, layer = {}, 1
    for index, stage in enumerate(features):
        first_layer[index] = layer
        if index > 0 and isinstance(stage, nn.Sequential) and type(stage[0]).__name__.startswith("SwinTransformerBlock"):
            layer += len(stage)
    if layer == 1:
        return None
    ids = {}
    for name in names:
        match = _SWIN_STAGE.search(name)
        if not match:
            ids[name] = layer  # final norm and head
            continue
        stage = int(match.group(1))
        if stage == 0:
            ids[name] = 0
        elif name[match.end():].split(".")[0].isdigit():  # block j of a stage
            ids[name] = first_layer[stage] + int(name[match.end():].split(".")[0])
        else:  # patch merging: with the last block before it
            ids[name] = first_layer[stage] - 1
    return ids


class UnsupportedModel(ValueError):
    """Layer decay was asked of a model whose blocks it cannot number."""


def layer_ids(model: nn.Module, names: List[str]) -> Dict[str, int]:
    """name -> layer id for every name in `names`, and L under the key ""; `UnsupportedModel` for other models."""
    ids = _vit_layers(names) or _swin_layers(model, names)
    if ids is None:
        raise UnsupportedModel("layer decay needs a torchvision ViT (encoder.layers.encoder_layer_<i>) or Swin "
                         "(features.<stage>.<block>) model")
    ids[""] = max(ids.values())
    return ids
