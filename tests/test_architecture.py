"""The import graph of `pet`: no cycles, and the config package never depends on the solver."""
import ast
import os
from typing import Dict, Set

import pytest

from tests.tools.conftest import ROOT

PACKAGE = os.path.join(ROOT, "pet")


def module_name(path: str) -> str:
    relative = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return relative[: -len(".__init__")] if relative.endswith(".__init__") else relative


def imports_of(path: str, modules: Set[str]) -> Set[str]:
    """The pet modules `path` imports at module level or inside functions (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pet"):
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> Dict[str, Set[str]]:
    paths = [os.path.join(folder, name) for folder, _, names in os.walk(PACKAGE) for name in names
             if name.endswith(".py")]
    modules = {module_name(path): path for path in paths}
    graph = {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}
    # A package's __init__ only re-exports; its submodules importing "pet.x" mean the submodule they name.
    return {name: {target for target in targets if not (name.startswith(target + ".") and
                                                         modules[target].endswith("__init__.py"))}
            for name, targets in graph.items()}


def test_the_import_graph_has_no_cycle():
    graph, state, path = import_graph(), {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_config_package_imports_nothing_of_the_solver_engine_data_or_models():
    for module, targets in import_graph().items():
        if module.startswith("pet.config"):
            outside = {t for t in targets if t.startswith(("pet.solver", "pet.engine", "pet.data", "pet.models"))}
            assert not outside, f"{module} imports {sorted(outside)}"


# Each package's rooms, from the bottom up: a module may import its own room and the rooms below it, never one above.
LAYERS = {
    "pet.engine": ["distributed", "persistence", "loop", "evaluation", "runs"],
    "pet.solver": ["param_groups", "optimizers", "schedules", "units"],
    "pet": ["errors", "state_fields", "imports", "lr_policies", "config", "solver", "data", "models", "engine"],
}


def room(module: str, package: str) -> int:
    """The index of the room of `package` that holds `module`, or -1 when it lies outside the package."""
    if not module.startswith(package + "."):
        return -1
    first = module[len(package) + 1:].split(".")[0]
    return LAYERS[package].index(first) if first in LAYERS[package] else -1


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_module_imports_only_its_own_room_and_the_rooms_below(package):
    for module, targets in import_graph().items():
        own = room(module, package)
        if own < 0:
            continue
        above = sorted(t for t in targets if room(t, package) > own)
        assert not above, f"{module} imports {above}, from above its room {LAYERS[package][own]}"


def test_every_module_of_pet_lies_in_a_room_and_no_package_is_a_crowd():
    graph = import_graph()
    for package in ("pet.engine", "pet.solver"):
        inside = [m for m in graph if m.startswith(package + ".")]
        assert all(room(m, package) >= 0 for m in inside), [m for m in inside if room(m, package) < 0]
    folders = {}
    for module in graph:
        folders.setdefault(module.rsplit(".", 1)[0], []).append(module)
    crowded = {folder: len(members) for folder, members in folders.items() if len(members) > 12}
    assert not crowded, crowded
