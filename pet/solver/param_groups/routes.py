"""Routes: which named optimizer (SOLVER.OPTIMIZERS entry) trains which parameter, a function of (name, parameter)
alone, as the group rules are.

An entry's selectors (MODULES, PARAMS regexes on full names, MIN_NDIM, MAX_NDIM) must all hold for a parameter it
takes; an entry without any takes what no other entry takes. A parameter two entries select, an entry that selects
none, and two entries that would both take the rest are `ConfigError`s naming them, before anything is built:
Muon on the hidden matrices and AdamW on the rest is two entries, neither written by hand per model.
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from torch import nn

from pet.config.named_optimizers import check_one_rest
from pet.errors import ConfigError
from pet.solver.param_groups.rules import in_modules, trainable_parameters


@dataclass(frozen=True)
class Selector:
    """The parameters one named optimizer takes: every selector given must hold.

    Attributes:
        modules: dotted module names; the parameter lives under one of them.
        params: regular expressions; one of them matches the parameter's full name entirely.
        min_ndim, max_ndim: bounds on the parameter's number of dimensions (0: no bound).
    """

    modules: Tuple[str, ...] = ()
    params: Tuple[str, ...] = ()
    min_ndim: int = 0
    max_ndim: int = 0

    @property
    def selects(self) -> bool:
        """Whether it selects by anything (else it takes the rest)."""
        return bool(self.modules or self.params or self.min_ndim or self.max_ndim)

    def accepts(self, name: str, param: nn.Parameter) -> bool:
        """Whether the parameter of full name `name` meets every selector given."""
        return (in_modules(name, self.modules)
                and (not self.params or any(re.fullmatch(pattern, name) for pattern in self.params))
                and (not self.min_ndim or param.dim() >= self.min_ndim)
                and (not self.max_ndim or param.dim() <= self.max_ndim))

    @classmethod
    def of_entry(cls, entry: dict) -> "Selector":
        """The selector of a SOLVER.OPTIMIZERS entry (as `optimizer_entries` gives it)."""
        return cls(tuple(entry["MODULES"]), tuple(entry["PARAMS"]), entry["MIN_NDIM"], entry["MAX_NDIM"])


def route_parameters(model: nn.Module, selectors: Dict[str, Selector], keys: Dict[str, str]
                     ) -> Dict[str, List[str]]:
    """name of each entry -> the full names of the trainable parameters it takes, in the model's order.

    `keys` names each entry in errors (its config key). Parameters no entry takes stay out of every list.
    """
    rest = [name for name, selector in selectors.items() if not selector.selects]
    check_one_rest([keys[name] for name in rest])
    routes: Dict[str, List[str]] = {name: [] for name in selectors}
    for full_name, _, _, param in trainable_parameters(model):
        takers = [name for name, selector in selectors.items() if selector.selects and selector.accepts(full_name,
                                                                                                         param)]
        if len(takers) > 1:
            raise ConfigError(f"parameter {full_name} (shape {tuple(param.shape)}) is selected by both "
                              f"{keys[takers[0]]} and {keys[takers[1]]}; a parameter belongs to one optimizer")
        owner = takers[0] if takers else (rest[0] if rest else None)
        if owner is not None:
            routes[owner].append(full_name)
    for name, names in routes.items():
        if not names:
            raise ConfigError(f"{keys[name]} selects no trainable parameter ({describe(selectors[name])})")
    return routes


def describe(selector: Selector) -> str:
    """The selectors given, as the config writes them."""
    parts: Sequence[Tuple[str, object]] = (("MODULES", selector.modules), ("PARAMS", selector.params),
                                           ("MIN_NDIM", selector.min_ndim), ("MAX_NDIM", selector.max_ndim))
    return ", ".join(f"{key} {value!r}" for key, value in parts if value) or "the rest, of which none is left"
