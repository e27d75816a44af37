"""Rules for config values: each a predicate paired with the text that says what is allowed.

The text is what an error message prints (`SOLVER.OPTIMIZER.BASE_LR = -1.0 is invalid; allowed: a number > 0`),
so a rule and its message cannot drift apart.
"""
import math
import re
from typing import Any, Callable, Iterable, NamedTuple


class Rule(NamedTuple):
    """`check(value)` is True for the allowed values; `allowed` describes them."""

    check: Callable[[Any], bool]
    allowed: str


def is_number(v: Any) -> bool:
    """An int or float that is not a bool or NaN."""
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and not math.isnan(v)


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_names(v: Any) -> bool:
    """A list or tuple of non-empty strings."""
    return isinstance(v, (list, tuple)) and all(isinstance(n, str) and n for n in v)


def is_regex(v: Any) -> bool:
    """A string that compiles as a regular expression."""
    try:
        re.compile(v)
    except (re.error, TypeError):
        return False
    return isinstance(v, str)


def one_of(choices: Iterable[str], case_sensitive: bool = False) -> Rule:
    """One of `choices` (in any case unless `case_sensitive`)."""
    choices = tuple(choices)
    allowed = {c if case_sensitive else c.upper() for c in choices}
    return Rule(lambda v: isinstance(v, str) and (v if case_sensitive else v.upper()) in allowed,
                " | ".join(choices))


def optional(rule: Rule) -> Rule:
    """None, or a value `rule` allows."""
    return Rule(lambda v: v is None or rule.check(v), f"None or {rule.allowed}")


def int_at_least(low: int, note: str = "", high: int = 10 ** 9) -> Rule:
    """An integer >= `low`, and at most `high`: larger counts are typos, and some overflow or exhaust memory."""
    most = f"1e{len(str(high)) - 1}" if high >= 10 ** 6 and str(high).strip("0") == "1" else str(high)
    return Rule(lambda v: is_int(v) and low <= v <= high, f"an integer >= {low}{note} (at most {most})")


MAX_ITERATIONS = 10 ** 9  # more updates than any run makes; a typo, and 1e15 overflows what counts them
POSITIVE_INT = Rule(lambda v: is_int(v) and 0 < v <= MAX_ITERATIONS, "an integer > 0 (at most 1e9)")
POSITIVE = Rule(lambda v: is_number(v) and 0 < v < math.inf, "a number > 0")
NON_NEGATIVE = Rule(lambda v: is_number(v) and 0 <= v < math.inf, "a number >= 0")
AT_LEAST_ONE = Rule(lambda v: is_number(v) and 1 <= v < math.inf, "a number >= 1")
FRACTION = Rule(lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
OPEN_FRACTION = Rule(lambda v: is_number(v) and 0 < v < 1, "a number in (0, 1)")
FACTOR = Rule(lambda v: is_number(v) and 0 < v <= 1, "a number in (0, 1]")
BOOL = Rule(lambda v: isinstance(v, bool), "True or False")
STRING = Rule(lambda v: isinstance(v, str), "a string")
NON_EMPTY_STRING = Rule(lambda v: isinstance(v, str) and v != "", "a non-empty string")
PATH = Rule(lambda v: isinstance(v, str) and v != "", "a non-empty path")
BETAS = Rule(lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(FRACTION.check(b) for b in v),
             "two numbers in [0, 1), e.g. (0.9, 0.999)")
STEPS = Rule(lambda v: (isinstance(v, (list, tuple)) and len(v) > 0 and all(POSITIVE.check(s) for s in v)
                        and all(a < b for a, b in zip(v, v[1:])) and v[-1] <= MAX_ITERATIONS),
             "a non-empty, strictly increasing list of numbers > 0")
PREFIX = Rule(lambda v: isinstance(v, str) and v.strip(".") == v and v != "",
              "a non-empty module name without leading or trailing dots")
OVERRIDE_RULES = Rule(lambda v: isinstance(v, (list, tuple)) and all(
    isinstance(r, (list, tuple)) and len(r) == 3 and is_regex(r[0]) and NON_NEGATIVE.check(r[1])
    and (r[2] is None or NON_NEGATIVE.check(r[2])) for r in v),
    "a list of (REGEX, LR_FACTOR >= 0, WEIGHT_DECAY >= 0 or None)")
NAMES = Rule(is_names, "a list of names")
