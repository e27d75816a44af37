"""The READMEs' key tables are the config tables: README.md's row for row, README_zh.md's keys and defaults."""
import os

import pytest

from pet.config.readme_tables import TABLES, blocks, render
from tests.tools.conftest import ROOT


def key_columns(table):
    """The key and default columns of a markdown table (what a translated table must keep)."""
    return [[cell.strip() for cell in line.strip("|").split("|")[:2]] for line in table.strip().splitlines()[2:]]


def readme_blocks(name):
    return blocks(open(os.path.join(ROOT, name), encoding="utf-8").read())


def test_every_table_is_in_both_readmes():
    assert set(readme_blocks("README.md")) == set(readme_blocks("README_zh.md")) == set(TABLES)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_the_english_table_is_rendered_from_the_config_tables(table):
    assert readme_blocks("README.md")[table] == render(table), "run: python -m pet.config.readme_tables"


@pytest.mark.parametrize("table", sorted(TABLES))
def test_the_chinese_table_has_the_same_keys_and_defaults(table):
    assert key_columns(readme_blocks("README_zh.md")[table]) == key_columns(render(table))


def test_a_drifted_default_is_noticed(monkeypatch):
    from pet.config import solver_keys
    from pet.config.schema import Key

    drifted = dict(solver_keys.OPTIMIZER, BASE_LR=Key(0.01, solver_keys.POSITIVE, "base learning rate, > 0"))
    monkeypatch.setitem(solver_keys.SOLVER, "OPTIMIZER", drifted)
    assert readme_blocks("README.md")["SOLVER"] != render("SOLVER")
