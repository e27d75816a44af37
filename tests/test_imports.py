"""Import paths in configs: a module of the working directory imports, as with `python -m`, even when the
running script's own folder is what Python put on the path; it never shadows an installed package."""
import sys

import pytest

from pet.errors import ConfigError
from pet.imports import import_attribute


@pytest.fixture
def script_path(monkeypatch, tmp_path):
    """sys.path as `python tools/train_net.py` has it: the script's folder first, not the working directory."""
    monkeypatch.setattr(sys, "path", [str(tmp_path / "tools")] + [p for p in sys.path if p not in ("", ".")])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_module_of_the_working_directory_imports(script_path, monkeypatch):
    (script_path / "my_models_here.py").write_text("def build_net(cfg):\n    return 'built'\n")
    monkeypatch.delitem(sys.modules, "my_models_here", raising=False)
    assert import_attribute("my_models_here:build_net", "MODEL.NAME")(None) == "built"
    assert sys.path[-1] == str(script_path)  # last: installed packages come first
    del sys.modules["my_models_here"]


def test_a_working_directory_module_never_shadows_an_installed_package(script_path):
    (script_path / "yacs.py").write_text("raise RuntimeError('the local yacs.py was imported')\n")
    assert import_attribute("yacs.config:CfgNode", "X").__module__ == "yacs.config"


def test_a_module_found_nowhere_says_where_it_was_looked_for(script_path):
    with pytest.raises(ConfigError, match=rf"cannot import nowhere_module .*searched the working directory "
                                          rf"{script_path} and the installed packages"):
        import_attribute("nowhere_module:net", "MODEL.NAME")


def test_a_missing_package_the_readme_names_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "lion_pytorch", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"cannot import lion_pytorch .*; pip install lion-pytorch$"):
        import_attribute("lion_pytorch.Lion", "SOLVER.OPTIMIZER.TYPE")
