"""Strict merges: files, lists and nodes; every failure one `ConfigError` naming the key or the path."""
import math

import pytest

from pet.config import CfgNode, ConfigError, get_cfg


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_merge_a_yaml_file(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(write(tmp_path, """
OUTPUT_DIR: runs/a
SOLVER:
  OPTIMIZER: {TYPE: adamw, BASE_LR: 1e-3, WEIGHT_DECAY: 0, BETAS: [0.9, 0.95]}
  SCHEDULER: {POLICY: COSINE, STEPS: [10, 20], TOTAL_EPOCHS: 12}
"""))
    opt, sched = cfg.SOLVER.OPTIMIZER, cfg.SOLVER.SCHEDULER
    assert cfg.OUTPUT_DIR == "runs/a"
    assert opt.TYPE == "adamw"
    assert opt.BASE_LR == 0.001 and isinstance(opt.BASE_LR, float)  # YAML reads 1e-3 as a string
    assert opt.WEIGHT_DECAY == 0.0 and isinstance(opt.WEIGHT_DECAY, float)  # int for a float key
    assert opt.BETAS == (0.9, 0.95) and isinstance(opt.BETAS, tuple)
    assert sched.STEPS == (10, 20) and sched.TOTAL_EPOCHS == 12


def test_merge_from_list_decodes_values():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", "0.1", "SOLVER.SCHEDULER.STEPS", "(100, 200)",
                         "SOLVER.OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE", "inf", "SOLVER.SCHEDULER.TOTAL_EPOCHS", "3",
                         "SOLVER.OPTIMIZER.NESTEROV", "True"])
    assert cfg.SOLVER.OPTIMIZER.BASE_LR == 0.1
    assert cfg.SOLVER.SCHEDULER.STEPS == (100, 200)
    assert cfg.SOLVER.OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE == math.inf
    assert cfg.SOLVER.SCHEDULER.TOTAL_EPOCHS == 3
    assert cfg.SOLVER.OPTIMIZER.NESTEROV is True


def test_norm_type_inf_in_yaml(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(write(tmp_path, "SOLVER:\n  OPTIMIZER:\n    CLIP_GRADIENTS:\n      NORM_TYPE: inf\n"))
    assert cfg.SOLVER.OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE == math.inf


@pytest.mark.parametrize("items, message", [
    (["SOLVER.OPTIMIZER.BASE_LRR", "0.1"], r"unknown config key SOLVER\.OPTIMIZER\.BASE_LRR; did you mean BASE_LR\?"),
    (["SOLVER.OPTIMIZR.BASE_LR", "0.1"], r"unknown config key SOLVER\.OPTIMIZR; did you mean OPTIMIZER\?"),
    (["SOLVER.OPTIMIZER.BASE_LR"], r"KEY VALUE pairs; got an odd number of items"),
    (["SOLVER.OPTIMIZER.BASE_LR", "fast"], r"SOLVER\.OPTIMIZER\.BASE_LR: expected a float like 0\.001, got 'fast'"),
    (["SOLVER.OPTIMIZER.NESTEROV", "1"], r"SOLVER\.OPTIMIZER\.NESTEROV: expected a bool"),
    (["SOLVER.SCHEDULER.TOTAL_ITERS", "1.5"], r"SOLVER\.SCHEDULER\.TOTAL_ITERS: expected a int like 40000"),
    (["SOLVER.SCHEDULER.STEPS", "100"], r"SOLVER\.SCHEDULER\.STEPS: expected a tuple"),
    (["SOLVER.OPTIMIZER", "1"], r"SOLVER\.OPTIMIZER is a group of keys"),
    (["SOLVER.OPTIMIZER.BASE_LR.X", "1"], r"SOLVER\.OPTIMIZER\.BASE_LR is a value, not a group of keys"),
])
def test_bad_overrides(items, message):
    with pytest.raises(ConfigError, match=message):
        get_cfg().merge_from_list(items)


@pytest.mark.parametrize("text, message", [
    ("SOLVER:\n  OPTIMIZER:\n    MOMENTUN: 0.9\n", r"unknown config key SOLVER\.OPTIMIZER\.MOMENTUN; did you mean MOMENTUM"),
    ("SOLVER:\n  SCHEDULER:\n    POLICY: {A: 1}\n", r"SOLVER\.SCHEDULER\.POLICY is a value; it cannot be set to"),
    ("SOLVER: 3\n", r"SOLVER is a group of keys; expected a mapping, got 3"),
    ("SOLVER:\n  OPTIMIZER:\n    BASE_LR: [0.1]\n", r"SOLVER\.OPTIMIZER\.BASE_LR: expected a float"),
    ("SOLVER: [\n", r"is not valid YAML"),
    ("", r"must hold a mapping of keys, got NoneType"),
    ("- 1\n- 2\n", r"must hold a mapping of keys, got list"),
])
def test_bad_files(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as error:
        get_cfg().merge_from_file(path)
    assert "\n" not in str(error.value)


def test_missing_file_names_the_path(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=rf"cannot read config file {missing}: No such file or directory"):
        get_cfg().merge_from_file(missing)


def test_a_failed_merge_names_the_first_bad_key_only_once():
    cfg = get_cfg()
    with pytest.raises(ConfigError) as error:
        cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", "0.5", "SOLVER.NOPE", "1"])
    assert str(error.value).count("SOLVER.NOPE") == 1


def test_merge_from_other_cfg_is_checked_too():
    cfg = get_cfg()
    cfg.merge_from_other_cfg(CfgNode({"SOLVER": {"OPTIMIZER": {"BASE_LR": 2}}}))
    assert cfg.SOLVER.OPTIMIZER.BASE_LR == 2.0
    with pytest.raises(ConfigError, match=r"unknown config key SOLVER\.EXTRA"):
        cfg.merge_from_other_cfg({"SOLVER": {"EXTRA": 1}})


def test_clone_keeps_the_strict_class():
    assert type(get_cfg().SOLVER.OPTIMIZER) is CfgNode


def write_file(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_base_files_are_read_first_at_any_depth_and_relative_to_the_file(tmp_path):
    write_file(tmp_path / "common" / "base.yaml",
               "SOLVER:\n  OPTIMIZER:\n    BASE_LR: 0.1\n    MOMENTUM: 0.5\nSEED: 3\n")
    write_file(tmp_path / "common" / "mid.yaml", "_BASE_: base.yaml\nSOLVER:\n  OPTIMIZER:\n    MOMENTUM: 0.8\n")
    write_file(tmp_path / "other.yaml", "TRAIN:\n  BATCH_SIZE: 7\nSEED: 4\n")
    top = write_file(tmp_path / "top.yaml", "_BASE_: [common/mid.yaml, other.yaml]\nSOLVER:\n  OPTIMIZER:\n"
                                       "    BASE_LR: 0.2\n")
    cfg = get_cfg()
    cfg.merge_from_file(top)
    assert (cfg.SOLVER.OPTIMIZER.BASE_LR, cfg.SOLVER.OPTIMIZER.MOMENTUM) == (0.2, 0.8)  # each file over its bases
    assert (cfg.SEED, cfg.TRAIN.BATCH_SIZE) == (4, 7)  # a later base over an earlier one
    assert cfg.SOLVER.OPTIMIZER.WEIGHT_DECAY == get_cfg().SOLVER.OPTIMIZER.WEIGHT_DECAY  # untouched keys keep defaults


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n"}, r"b.yaml: _BASE_ a.yaml leads back to itself "
                                                                     r"\(a.yaml -> b.yaml -> a.yaml\)"),
    ({"a.yaml": "_BASE_: a.yaml\n"}, r"_BASE_ a.yaml leads back to itself"),
    ({"a.yaml": "_BASE_: gone.yaml\n"}, r"a.yaml: its _BASE_ .*gone.yaml does not exist"),
    ({"a.yaml": "_BASE_: [3]\n"}, r"_BASE_ = \[3\] must name a file or a list of files"),
    ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "SOLVER:\n  NOPE: 1\n"}, r"unknown config key SOLVER.NOPE"),
])
def test_bad_base_files_are_one_config_error(tmp_path, files, message):
    for name, text in files.items():
        write_file(tmp_path / name, text)
    with pytest.raises(ConfigError, match=message):
        get_cfg().merge_from_file(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize("items, message", [
    (["solver.optimizer.base_lr", "0.1"], r"unknown config key solver.optimizer.base_lr; did you mean "
                                          r"SOLVER.OPTIMIZER.BASE_LR\? \(config keys are upper case\)"),
    (["SOLVER.OPTIMIZER.base_lr", "0.1"], r"did you mean SOLVER.OPTIMIZER.BASE_LR\?"),
    (["SOLVER.OPTIMIZER.BASE_LR=0.1"], r"config overrides are KEY VALUE pairs separated by a space: write "
                                       r"`SOLVER.OPTIMIZER.BASE_LR 0.1`, not `SOLVER.OPTIMIZER.BASE_LR=0.1`"),
])
def test_lower_case_keys_and_key_equals_value_get_a_suggestion(items, message):
    with pytest.raises(ConfigError, match=message):
        get_cfg().merge_from_list(items)


def test_a_lower_case_key_in_a_file_gets_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key solver; did you mean SOLVER\?"):
        get_cfg().merge_from_file(write_file(tmp_path / "a.yaml", "solver:\n  OPTIMIZER:\n    BASE_LR: 0.1\n"))


def test_each_base_file_is_read_once_however_often_the_chain_names_it(tmp_path, monkeypatch):
    from pet.config import node

    for i in range(20):  # each file names the next twice: 2**20 reads if the chain were walked naively
        write_file(tmp_path / f"c{i}.yaml", f"_BASE_: [c{i + 1}.yaml, c{i + 1}.yaml]\nSEED: {i}\n")
    write_file(tmp_path / "c20.yaml", "SEED: 20\nTRAIN:\n  BATCH_SIZE: 5\n")
    reads = []
    read_yaml = node.read_yaml
    monkeypatch.setattr(node, "read_yaml", lambda path: reads.append(path) or read_yaml(path))
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "c0.yaml"))
    assert (cfg.SEED, cfg.TRAIN.BATCH_SIZE) == (0, 5)
    assert sorted(reads) == sorted(str(tmp_path / f"c{i}.yaml") for i in range(21))


def test_a_base_chain_deeper_than_the_bound_is_one_error(tmp_path):
    from pet.config.node import MAX_BASE_DEPTH

    for i in range(1500):
        write_file(tmp_path / f"c{i}.yaml", f"_BASE_: c{i + 1}.yaml\n")
    write_file(tmp_path / "c1500.yaml", "SEED: 1\n")
    with pytest.raises(ConfigError, match=rf"c0\.yaml: its _BASE_ chain is more than {MAX_BASE_DEPTH} files deep"):
        get_cfg().merge_from_file(str(tmp_path / "c0.yaml"))
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / f"c{1500 - MAX_BASE_DEPTH + 1}.yaml"))  # a chain at the bound is fine
    assert cfg.SEED == 1


def test_an_alias_bomb_is_refused_before_it_expands_and_errors_stay_short(tmp_path):
    text = "SOLVER:\n  OPTIMIZER:\n    KWARGS:\n      a: &a [xxxxxxxx, x, x, x, x, x, x, x, x, x]\n"
    text += "".join(f"      {n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
    with pytest.raises(ConfigError, match=r"expands to more than 10000 values") as error:
        get_cfg().merge_from_file(write_file(tmp_path / "bomb.yaml", text))
    assert len(str(error.value)) < 300
    big = "SOLVER:\n  SCHEDULER:\n    STEPS: [" + ", ".join(["-1"] * 5000) + "]\n"
    with pytest.raises(ConfigError, match=r"STEPS: expected a tuple|STEPS = .*\.\.\. \(\d+ characters\)") as error:
        cfg = get_cfg()
        cfg.merge_from_file(write_file(tmp_path / "big.yaml", big))
        from pet.config import validate_cfg
        validate_cfg(cfg)
    assert len(str(error.value)) < 400
