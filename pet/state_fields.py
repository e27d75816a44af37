"""The fields a saved state must hold before an object loads it: a checkpoint that lacks one, or holds one of
another type, is a `ValueError` naming it (what a user's broken or foreign file does), never a `KeyError` or a
`TypeError` deep inside a `load_state_dict` (what a bug does)."""
from typing import Any, Dict, Tuple, Type, Union

Types = Union[Type, Tuple[Type, ...]]


def require_fields(state: Any, fields: Dict[str, Types], what: str) -> None:
    """Raise `ValueError` unless `state` is a dict holding each of `fields` with a value of its type(s) (an int
    is never taken for a bool)."""
    if not isinstance(state, dict):
        raise ValueError(f"the {what} state is a {type(state).__name__}, not a dict")
    for name, types in fields.items():
        if name not in state:
            raise ValueError(f"the {what} state has no {name!r}")
        value = state[name]
        allowed = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ValueError(f"the {what} state's {name!r} is a {type(value).__name__}, not "
                             f"{' or '.join(t.__name__ for t in allowed)}")
