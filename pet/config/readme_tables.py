"""The README's key tables, rendered from the config tables, so that the documentation cannot drift from them.

`python -m pet.config.readme_tables` rewrites the tables of README.md in place (between the
`<!-- keys: NAME -->` and `<!-- /keys -->` markers); the test suite fails when a README's table differs.
"""
import os
import re
import sys
from typing import Any, Dict, List

from pet.config.run_keys import RUN
from pet.config.schema import OpenSection, Section, leaves
from pet.config.solver_keys import SOLVER

# Each table of the READMEs: its marker name -> (section, the prefix its keys are shown under).
TABLES: Dict[str, Section] = {"RUN": RUN, "SOLVER": SOLVER}
BLOCK = re.compile(r"(<!-- keys: (\w+) -->\n)(.*?)(<!-- /keys -->)", re.S)


def format_default(value: Any) -> str:
    """A default as the README shows it: `"SGD"`, `0.001`, `1e-4`, `(0.9, 0.999)`, `None`."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and value != 0 and not 1e-3 <= abs(value) < 1e4:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    if isinstance(value, tuple):
        inner = ", ".join(format_default(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def rows(section: Section) -> List[str]:
    """One markdown row per key: | `KEY` | `default` | meaning |."""
    lines = []
    for key, entry in leaves(section):
        default = "{}" if isinstance(entry, OpenSection) else format_default(entry.default)
        lines.append(f"| `{key}` | `{default}` | {entry.help} |")
    return lines


def render(name: str) -> str:
    """The whole English table named `name`."""
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *rows(TABLES[name])]) + "\n"


def blocks(text: str) -> Dict[str, str]:
    """The tables between the key markers of a README, by name."""
    return {match.group(2): match.group(3) for match in BLOCK.finditer(text)}


def rewrite(path: str) -> None:
    """Replace every key table of the README at `path` with the rendered one."""
    text = open(path, encoding="utf-8").read()
    text = BLOCK.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(4), text)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    rewrite(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "README.md"))
