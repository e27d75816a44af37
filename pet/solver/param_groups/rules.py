"""Parameter groups: per-parameter rules, then a merge into the fewest groups.

The rules are plain functions of (name, module, parameter): `param_kind` says what a parameter is (a norm-layer
parameter, an embedding, a bias, or an ordinary weight) and `param_hyperparams` turns that into an lr and a weight
decay. Layer-wise decay (ViT/Swin) and the regex overrides of OVERRIDES.RULES then adjust them, in that order.
`merge_param_groups` is separate: parameters with equal hyperparameters share one group, in first-seen order, so
the optimizer holds exactly as many groups as there are distinct hyperparameter sets.
"""
import re
from dataclasses import dataclass
from typing import Any, Collection, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from torch import nn

from pet.solver.param_groups.layer_decay import layer_ids

# Every norm layer of torch.nn. `_NormBase` also covers subclasses that do not derive from the public classes
# (the lazy BatchNorm/InstanceNorm variants).
NORM_TYPES: Tuple[type, ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm, nn.RMSNorm,
    nn.modules.batchnorm._NormBase,
)

# Parameter names that hold embeddings or tokens in the vision transformers of timm (ViT, DeiT, Swin, BEiT, MAE)
# and torchvision (ViT: class_token, encoder.pos_embedding; Swin, MaxViT: relative_position_bias_table).
EMBED_PARAM_NAMES = frozenset({
    "pos_embed", "pos_embedding", "position_embedding", "absolute_pos_embed", "relative_position_bias_table",
    "cls_token", "class_token", "dist_token", "reg_token", "mask_token",
})


@dataclass(frozen=True)
class GroupRules:
    """The numbers the grouping rules need (SOLVER.OPTIMIZER's keys, as plain values).

    Attributes:
        base_lr: the lr of an ordinary weight.
        weight_decay, weight_decay_bias, weight_decay_norm, weight_decay_embed: the decay of each kind.
        bias_lr_factor: lr factor of biases outside norm layers.
        backbone_lr_factor: lr factor of parameters under `backbone_prefix` + ".".
        backbone_prefix: the module name that marks the backbone.
        lars_exclude_norm_and_bias: for LARS, whether norm and bias parameters skip the trust ratio (None for
            other optimizers: the groups get no `lars_exclude` entry).
        layer_decay_rate: layer-wise lr decay of ViT / Swin backbones (1: off).
        overrides: (regex, lr factor, weight decay or None) rules applied last, in order.
    """

    base_lr: float
    weight_decay: float = 0.0
    weight_decay_bias: float = 0.0
    weight_decay_norm: float = 0.0
    weight_decay_embed: float = 0.0
    bias_lr_factor: float = 1.0
    backbone_lr_factor: float = 1.0
    backbone_prefix: str = "backbone"
    lars_exclude_norm_and_bias: Optional[bool] = None
    layer_decay_rate: float = 1.0
    overrides: Tuple[Tuple[str, float, Optional[float]], ...] = ()


class ParamEntry(NamedTuple):
    """One trainable parameter: full dotted name, hyperparameters, and a label (scope, tag, kind) for names."""

    name: str
    param: nn.Parameter
    hyperparams: Dict[str, Any]
    label: Tuple[str, str, str]


def trainable_parameters(model: nn.Module) -> Iterator[Tuple[str, nn.Module, str, nn.Parameter]]:
    """Yield (full name, owning module, local name, parameter) once per trainable parameter.

    Frozen parameters (`requires_grad=False`) are skipped; a parameter shared by several modules is yielded once,
    under the first name `named_modules()` reaches it by.
    """
    seen = set()
    for module_name, module in model.named_modules():
        for local_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            yield (f"{module_name}.{local_name}" if module_name else local_name), module, local_name, param


def param_kind(local_name: str, module: nn.Module) -> str:
    """What a parameter is, by the first rule that applies: `norm` (it belongs to a norm layer), `embed` (an
    `nn.Embedding`'s, or a token / position name of EMBED_PARAM_NAMES), `bias` (its own name ends in `bias`:
    `bias`, `in_proj_bias` of `nn.MultiheadAttention`, timm's `q_bias`), or `weight`."""
    if isinstance(module, NORM_TYPES):
        return "norm"
    if isinstance(module, nn.Embedding) or local_name in EMBED_PARAM_NAMES:
        return "embed"
    if local_name.endswith("bias"):
        return "bias"
    return "weight"


def in_backbone(full_name: str, backbone_prefix: str) -> bool:
    """Whether a parameter lives under the backbone module (`BACKBONE_PREFIX` followed by a dot)."""
    return full_name.startswith(backbone_prefix + ".")


def param_hyperparams(full_name: str, kind: str, rules: GroupRules) -> Dict[str, Any]:
    """The lr and weight decay of a parameter of this kind and name: the decay of its kind; BASE_LR x
    BACKBONE_LR_FACTOR under the backbone x BIAS_LR_FACTOR for a bias (the factors multiply)."""
    weight_decay = {
        "norm": rules.weight_decay_norm,
        "embed": rules.weight_decay_embed,
        "bias": rules.weight_decay_bias,
        "weight": rules.weight_decay,
    }[kind]
    lr = rules.base_lr
    if in_backbone(full_name, rules.backbone_prefix):
        lr *= rules.backbone_lr_factor
    if kind == "bias":
        lr *= rules.bias_lr_factor
    hyperparams = {"lr": lr, "weight_decay": weight_decay}
    if rules.lars_exclude_norm_and_bias is not None:
        hyperparams["lars_exclude"] = rules.lars_exclude_norm_and_bias and kind in ("norm", "bias")
    return hyperparams


def apply_overrides(full_name: str, hyperparams: Dict[str, Any], rules: Sequence[Tuple[str, float, Optional[float]]]
                    ) -> Tuple[Dict[str, Any], str]:
    """Apply every (regex, lr factor, weight decay) rule whose regex matches the whole name, in order.

    Returns the new hyperparameters and a tag naming the rules that applied (`override1`, `override1,3`).
    """
    applied = []
    for index, (pattern, lr_factor, weight_decay) in enumerate(rules, start=1):
        if re.fullmatch(pattern, full_name):
            hyperparams = dict(hyperparams, lr=hyperparams["lr"] * lr_factor)
            if weight_decay is not None:
                hyperparams["weight_decay"] = weight_decay
            applied.append(str(index))
    return hyperparams, f"override{','.join(applied)}" if applied else ""


def in_modules(full_name: str, modules: Sequence[str]) -> bool:
    """Whether a parameter lives under one of `modules` (dotted module names); every parameter when empty."""
    return not modules or any(full_name.startswith(module + ".") for module in modules)


def param_entries(model: nn.Module, rules: GroupRules, modules: Sequence[str] = (),
                  names: Optional[Collection[str]] = None) -> List[ParamEntry]:
    """Apply the rules to every trainable parameter of `model` under `modules` (and among `names`, the full names
    a route chose, when given).

    Raises ValueError when layer decay is asked of a model that is not a torchvision ViT or Swin.
    """
    chosen = None if names is None else set(names)
    params = [p for p in trainable_parameters(model)
              if in_modules(p[0], modules) and (chosen is None or p[0] in chosen)]
    rate = rules.layer_decay_rate
    layers = layer_ids(model, [name for name, _, _, _ in params]) if rate < 1 else {}
    entries = []
    for full_name, module, local_name, param in params:
        kind = param_kind(local_name, module)
        hyperparams = param_hyperparams(full_name, kind, rules)
        tag = ""
        if layers:
            hyperparams["lr"] *= rate ** (layers[""] - layers[full_name])
            tag = f"layer{layers[full_name]}"
        hyperparams, override_tag = apply_overrides(full_name, hyperparams, rules.overrides)
        scope = rules.backbone_prefix if in_backbone(full_name, rules.backbone_prefix) else ""
        entries.append(ParamEntry(full_name, param, hyperparams, (scope, override_tag or tag, kind)))
    return entries


def merge_param_groups(entries: List[ParamEntry]) -> List[Dict[str, Any]]:
    """Merge entries with equal hyperparameters into one group each, in first-seen order.

    Each group holds `params` as (name, tensor) pairs, so torch records `param_names`, and a readable `name`.
    """
    groups: Dict[Tuple, Dict[str, Any]] = {}
    labels: Dict[Tuple, List[Tuple[str, str, str]]] = {}
    for entry in entries:
        key = tuple(sorted(entry.hyperparams.items()))
        if key not in groups:
            groups[key] = {"params": [], **entry.hyperparams}
            labels[key] = []
        groups[key]["params"].append((entry.name, entry.param))
        if entry.label not in labels[key]:
            labels[key].append(entry.label)
    taken: Dict[str, int] = {}
    for key, group in groups.items():
        group["name"] = _unique(group_name(labels[key]), taken)
    return list(groups.values())


def group_name(labels: List[Tuple[str, str, str]]) -> str:
    """A readable name from member labels (scope, tag, kind): `backbone.norm+bias`, `layer3.weight`, `bias`.

    The scope and the tag are named only when every member shares them; kinds are joined with `+` in
    first-seen order.
    """
    shared = [labels[0][position] for position in (0, 1)
              if labels[0][position] and all(label[position] == labels[0][position] for label in labels)]
    kinds = "+".join(dict.fromkeys(label[2] for label in labels))
    return ".".join(shared + [kinds])


def _unique(name: str, taken: Dict[str, int]) -> str:
    """`name`, or `name#2`, `name#3`, ... when taken. `taken` holds every name given out, and for a name given
    out more than once the last suffix it got, so that finding the next one takes no search."""
    candidate = name
    while candidate in taken:
        taken[name] = taken[name] + 1 if name in taken else 2
        candidate = f"{name}#{taken[name]}"
    taken[candidate] = 1
    return candidate


def build_param_groups(model: nn.Module, rules: GroupRules, modules: Sequence[str] = (),
                       names: Optional[Collection[str]] = None) -> List[Dict[str, Any]]:
    """Rules then merge: the param groups for `model` (or its `modules`, or the parameters of full `names`).

    Example:
        >>> groups = build_param_groups(model, GroupRules(base_lr=0.1, weight_decay=1e-4, backbone_lr_factor=0.1))
        >>> torch.optim.SGD(groups, momentum=0.9)
    """
    entries = param_entries(model, rules, modules, names)
    if not entries:
        where = f"modules {list(modules)} of " if modules else "the parameters chosen of " if names is not None \
            else ""
        raise ValueError(f"{where}{type(model).__name__} have no trainable parameters (all frozen, or none)")
    return merge_param_groups(entries)
