"""The bad-input matrix: every malformed config file, command line or data folder stops `train_net.py` with one
`error: ...` line naming the key, value or path, before training and before anything in OUTPUT_DIR changes."""
import os
import re

import pytest
from PIL import Image

from tests.tools.conftest import DEFAULT_CFG
from tests.tools.test_cli_errors import train_net

# (name, YAML text or None for "no file", extra argv, the text the error line must contain)
YAML_VALUES = [
    ("type", "SOLVER:\n  OPTIMIZER:\n    TYPE: SGDX\n", "SOLVER.OPTIMIZER.TYPE = 'SGDX'"),
    ("base_lr", "SOLVER:\n  OPTIMIZER:\n    BASE_LR: -0.1\n", "SOLVER.OPTIMIZER.BASE_LR = -0.1"),
    ("momentum", "SOLVER:\n  OPTIMIZER:\n    MOMENTUM: 1.5\n", "SOLVER.OPTIMIZER.MOMENTUM = 1.5"),
    ("nesterov", "SOLVER:\n  OPTIMIZER:\n    NESTEROV: 3\n", "SOLVER.OPTIMIZER.NESTEROV: expected a bool"),
    ("betas", "SOLVER:\n  OPTIMIZER:\n    BETAS: [0.9]\n", "SOLVER.OPTIMIZER.BETAS = (0.9,)"),
    ("eps", "SOLVER:\n  OPTIMIZER:\n    EPS: 0\n", "SOLVER.OPTIMIZER.EPS = 0.0"),
    ("weight_decay", "SOLVER:\n  OPTIMIZER:\n    WEIGHT_DECAY: -1\n", "SOLVER.OPTIMIZER.WEIGHT_DECAY = -1.0"),
    ("wd_bias", "SOLVER:\n  OPTIMIZER:\n    WEIGHT_DECAY_BIAS: -1\n", "SOLVER.OPTIMIZER.WEIGHT_DECAY_BIAS = -1.0"),
    ("wd_norm", "SOLVER:\n  OPTIMIZER:\n    WEIGHT_DECAY_NORM: fast\n", "SOLVER.OPTIMIZER.WEIGHT_DECAY_NORM: expected"),
    ("wd_embed", "SOLVER:\n  OPTIMIZER:\n    WEIGHT_DECAY_EMBED: [1]\n", "SOLVER.OPTIMIZER.WEIGHT_DECAY_EMBED: expected"),
    ("bias_factor", "SOLVER:\n  OPTIMIZER:\n    BIAS_LR_FACTOR: -2\n", "SOLVER.OPTIMIZER.BIAS_LR_FACTOR = -2.0"),
    ("backbone_factor", "SOLVER:\n  OPTIMIZER:\n    BACKBONE_LR_FACTOR: null\n",
     "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR = None"),
    ("prefix", "SOLVER:\n  OPTIMIZER:\n    BACKBONE_PREFIX: 'backbone.'\n", "SOLVER.OPTIMIZER.BACKBONE_PREFIX"),
    ("clip_enabled", "SOLVER:\n  OPTIMIZER:\n    CLIP_GRADIENTS:\n      ENABLED: 'yes'\n",
     "SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED: expected a bool"),
    ("clip_type", "SOLVER:\n  OPTIMIZER:\n    CLIP_GRADIENTS:\n      CLIP_TYPE: global\n",
     "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE = 'global'"),
    ("clip_value", "SOLVER:\n  OPTIMIZER:\n    CLIP_GRADIENTS:\n      CLIP_VALUE: 0\n",
     "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE = 0.0"),
    ("norm_type", "SOLVER:\n  OPTIMIZER:\n    CLIP_GRADIENTS:\n      NORM_TYPE: -2\n",
     "SOLVER.OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE = -2.0"),
    ("policy", "SOLVER:\n  SCHEDULER:\n    POLICY: CYCLIC\n", "SOLVER.SCHEDULER.POLICY = 'CYCLIC'"),
    ("total_iters", "SOLVER:\n  SCHEDULER:\n    TOTAL_ITERS: 0\n", "SOLVER.SCHEDULER.TOTAL_ITERS = 0"),
    ("total_epochs", "SOLVER:\n  SCHEDULER:\n    TOTAL_EPOCHS: -3\n", "SOLVER.SCHEDULER.TOTAL_EPOCHS = -3"),
    ("steps", "SOLVER:\n  SCHEDULER:\n    STEPS: [500, 100]\n", "SOLVER.SCHEDULER.STEPS = (500, 100)"),
    ("gamma", "SOLVER:\n  SCHEDULER:\n    GAMMA: 2\n", "SOLVER.SCHEDULER.GAMMA = 2.0"),
    ("warmup_iters", "SOLVER:\n  SCHEDULER:\n    WARM_UP_ITERS: -5\n", "SOLVER.SCHEDULER.WARM_UP_ITERS = -5"),
    ("warmup_epochs", "SOLVER:\n  SCHEDULER:\n    WARM_UP_EPOCHS: -1.0\n", "SOLVER.SCHEDULER.WARM_UP_EPOCHS = -1.0"),
    ("warmup_factor", "SOLVER:\n  SCHEDULER:\n    WARM_UP_FACTOR: 0\n", "SOLVER.SCHEDULER.WARM_UP_FACTOR = 0.0"),
    ("warmup_method", "SOLVER:\n  SCHEDULER:\n    WARM_UP_METHOD: COSINE\n", "SOLVER.SCHEDULER.WARM_UP_METHOD = 'COSINE'"),
    ("lr_pow", "SOLVER:\n  SCHEDULER:\n    LR_POW: 0\n", "SOLVER.SCHEDULER.LR_POW = 0.0"),
    ("min_lr", "SOLVER:\n  SCHEDULER:\n    MIN_LR_FACTOR: 1\n", "SOLVER.SCHEDULER.MIN_LR_FACTOR = 1.0"),
    ("log_threshold", "SOLVER:\n  SCHEDULER:\n    LOG_LR_CHANGE_THRESHOLD: 0.5\n",
     "SOLVER.SCHEDULER.LOG_LR_CHANGE_THRESHOLD = 0.5"),
    ("accumulation", "SOLVER:\n  ACCUMULATION:\n    STEPS: 0\n", "SOLVER.ACCUMULATION.STEPS = 0"),
    ("amp", "SOLVER:\n  AMP:\n    DTYPE: float8\n", "SOLVER.AMP.DTYPE = 'float8'"),
    ("batch", "TRAIN:\n  BATCH_SIZE: 0\n", "TRAIN.BATCH_SIZE = 0"),
    ("model", "MODEL:\n  NAME: resnet19\n", "MODEL.NAME = 'resnet19'"),
    ("num_classes", "MODEL:\n  NUM_CLASSES: 5\n", "MODEL.NUM_CLASSES = 5 is smaller than the data set's 10 classes"),
    ("modules_typo", "SOLVER:\n  OPTIMIZERS:\n    a: {MODULES: [backbone]}\n    b: {MODULES: [haed]}\n",
     "SOLVER.OPTIMIZERS.b.MODULES: 'haed' is not a module of the model; did you mean head?"),
    ("modules_nested", "SOLVER:\n  OPTIMIZERS:\n    a: {MODULES: [backbone]}\n    b: {MODULES: [backbone.layer1]}\n",
     "parameter backbone.layer1.0.conv1.weight (shape (64, 64, 3, 3)) is selected by both SOLVER.OPTIMIZERS.a and "
     "SOLVER.OPTIMIZERS.b"),
    ("seed_too_large", "SEED: 4294967296\n", "SEED = 4294967296 is invalid"),
    ("val_fraction", "DATA:\n  VAL_FRACTION: 0.9999\n", "DATA.VAL_FRACTION = 0.9999 leaves a split without"),
    ("warmup_epochs_huge", "SOLVER:\n  SCHEDULER:\n    WARM_UP_EPOCHS: 1.0e+308\n",
     "SOLVER.SCHEDULER.WARM_UP_EPOCHS = 1e+308 is invalid"),
    ("num_classes_huge", "MODEL:\n  NUM_CLASSES: 1000000000000\n", "MODEL.NUM_CLASSES = 1000000000000 is invalid"),
    ("workers_huge", "DATA:\n  NUM_WORKERS: 1000000000000000000000000\n", "DATA.NUM_WORKERS = 10000000"),
    ("batch_of_one", "TRAIN:\n  BATCH_SIZE: 1\n", "TRAIN.BATCH_SIZE = 1 with BatchNorm layers"),
    ("total_iters_huge", "SOLVER:\n  SCHEDULER:\n    TOTAL_ITERS: 1000000000000000\n",
     "SOLVER.SCHEDULER.TOTAL_ITERS = 1000000000000000 is invalid"),
    ("test_batch_huge", "TEST:\n  BATCH_SIZE: 1000000000000000000000000\n", "TEST.BATCH_SIZE = 10000000"),
    ("lr_overflow", "SOLVER:\n  OPTIMIZER:\n    BASE_LR: 1.0e+300\n  LR_SCALING:\n    FT_FACTOR: 1.0e+300\n",
     "overflows to inf"),
    ("own_rise_warmup", "SOLVER:\n  SCHEDULER:\n    POLICY: ONE_CYCLE\n    WARM_UP_ITERS: 100\n",
     "SOLVER.SCHEDULER.WARM_UP_ITERS = 100 is not used with SOLVER.SCHEDULER.POLICY = 'ONE_CYCLE'"),
    ("kwargs_nan", "SOLVER:\n  OPTIMIZER:\n    KWARGS: {dampening: .nan}\n",
     "SOLVER.OPTIMIZER.KWARGS.dampening = nan is invalid; allowed: finite numbers"),
    ("kwargs_string", "SOLVER:\n  OPTIMIZER:\n    KWARGS: {dampening: fast}\n",
     "SOLVER.OPTIMIZER.KWARGS.dampening = 'fast' is invalid; allowed: a finite number"),
    ("kwargs_bool", "SOLVER:\n  OPTIMIZER:\n    TYPE: ADAMW\n    KWARGS: {amsgrad: 'yes'}\n",
     "SOLVER.OPTIMIZER.KWARGS.amsgrad = 'yes' is invalid; allowed: True or False"),
]
YAML_STRUCTURE = [
    ("unknown_key", "SOLVER:\n  OPTIMIZER:\n    LR: 0.1\n", "unknown config key SOLVER.OPTIMIZER.LR"),
    ("unknown_top", "FOO: 1\n", "unknown config key FOO"),
    ("unknown_node", "SOLVER:\n  SCHEDULR:\n    POLICY: STEP\n", "unknown config key SOLVER.SCHEDULR"),
    ("value_for_group", "SOLVER: 5\n", "SOLVER is a group of keys"),
    ("syntax", "SOLVER:\n  OPTIMIZER: [\n", "is not valid YAML"),
    ("empty", "", "must hold a mapping of keys, got NoneType"),
    ("list", "- SOLVER\n", "must hold a mapping of keys, got list"),
    ("missing_file", None, "cannot read config file"),
    ("duplicate_key", "SOLVER:\n  OPTIMIZER:\n    BASE_LR: 0.1\nSOLVER:\n  SCHEDULER:\n    GAMMA: 0.5\n",
     "the key 'SOLVER' appears twice in one mapping"),
    ("base_null", "_BASE_: null\n", "_BASE_ = None must name a file or a list of files"),
    ("base_number", "_BASE_: 3\n", "_BASE_ = 3 must name a file or a list of files"),
    ("base_mapping", "_BASE_: {a: b.yaml}\n", "_BASE_ = {'a': 'b.yaml'} must name a file or a list of files"),
    ("base_folder", "_BASE_: .\n", "is a folder, not a config file"),
    ("list_key", "SOLVER:\n  ? [a, b]\n  : 1\n", "line 3: a key must be a name, not a list"),
    ("mapping_key", "SOLVER:\n  {x: 1}: 2\n", "line 3: a key must be a name, not a dict"),
    ("alias_bomb", "SOLVER:\n  OPTIMIZER:\n    KWARGS:\n      a: &a [x, x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"      {n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcd", "bcde"))
     + "  SCHEDULER:\n    STEPS: *e\n", "expands to more than 10000 values"),
    ("model_dot", "MODEL:\n  NAME: '.'\n", "MODEL.NAME = '.' is not an import path; write pkg.module:name"),
    ("model_colon", "MODEL:\n  NAME: ':'\n", "MODEL.NAME = ':' is not an import path"),
    ("model_relative", "MODEL:\n  NAME: .foo:bar\n", "MODEL.NAME = '.foo:bar' is not an import path"),
    ("model_class", "MODEL:\n  NAME: torch.nn:Module\n",
     "MODEL.NAME = 'torch.nn:Module' failed when called with (cfg): TypeError: Module.__init__() takes 1 positional"),
    ("model_system", "MODEL:\n  NAME: os:system\n", "MODEL.NAME = 'os:system' failed when called with (cfg): "
                                                     "TypeError"),
    ("data_add", "DATA:\n  DATASET: operator:add\n",
     "DATA.DATASET = 'operator:add' failed when called with (cfg, split): TypeError: unsupported operand"),
    ("best_mode", "TRAIN:\n  BEST_MODE: highest\n", "TRAIN.BEST_MODE = 'highest' is invalid; allowed: \"\" | max | min"),
    ("huge_int", "SEED: " + "1" * 5000 + "\n", "cannot read config file"),
    ("huge_float", "SOLVER:\n  OPTIMIZER:\n    BASE_LR: 1" + "0" * 400 + "\n", "is too large for a number"),
    ("huge_steps", "SOLVER:\n  SCHEDULER:\n    STEPS: [1" + "0" * 400 + "]\n", "SOLVER.SCHEDULER.STEPS = (1000"),
    ("base_nul", "_BASE_: \"a\\0b.yaml\"\n", "holds a NUL character"),
    ("kwargs_item", "SOLVER:\n  OPTIMIZER:\n    TYPE: RPROP\n    WEIGHT_DECAY: 0\n    KWARGS: {etas: [a, b]}\n",
     "SOLVER.OPTIMIZER.KWARGS.etas[0] = 'a' is invalid"),
    ("kwargs_length", "SOLVER:\n  OPTIMIZER:\n    TYPE: RPROP\n    WEIGHT_DECAY: 0\n    KWARGS: {etas: [0.5]}\n",
     "SOLVER.OPTIMIZER.KWARGS.etas = [0.5] is invalid; allowed: 2 items like (0.5, 1.2)"),
    ("kwargs_float32", "SOLVER:\n  OPTIMIZER:\n    TYPE: ASGD\n    KWARGS: {lambd: 1.0e+308}\n",
     "finite numbers of at most 3.4e+38"),
    ("kwargs_refused", "SOLVER:\n  OPTIMIZER:\n    TYPE: ADAMW\n    KWARGS: {differentiable: True}\n",
     "cannot optimize this model: `fused` does not support `differentiable`"),
    ("builder_exits", "MODEL:\n  NAME: sys:exit\n", "MODEL.NAME = 'sys:exit' failed when called with (cfg): SystemExit"),
]
COMMAND_LINES = [
    ("odd", ["SOLVER.OPTIMIZER.BASE_LR"], "odd number of items"),
    ("unknown_override", ["SOLVER.OPTIMIZER.BASE_LRR", "0.1"], "unknown config key SOLVER.OPTIMIZER.BASE_LRR"),
    ("unparsable", ["SOLVER.OPTIMIZER.BASE_LR", "abc"], "SOLVER.OPTIMIZER.BASE_LR: expected a float"),
    ("bad_override_value", ["SOLVER.SCHEDULER.GAMMA", "-1"], "SOLVER.SCHEDULER.GAMMA = -1.0"),
    ("unknown_option", ["--resum"], "unrecognized arguments: --resum"),
]
DATA = ["missing_folder", "empty_folder", "unreadable_image", "no_root"]

SENTINELS = {"metrics.json": "old metrics\n", "config.yaml": "old: config\n", "log.txt": "old log\n",
             "model_final.pth": "old weights", "last_checkpoint": "model_final.pth\n"}


def image_folder(root, broken=False, empty=False):
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            if not empty:
                Image.new("RGB", (12, 12)).save(folder / "0.png")
    if broken:
        (root / "train" / "b" / "1.png").write_bytes(b"\x89PNG broken")


def data_case(name, tmp_path):
    root = tmp_path / "images"
    if name == "no_root":
        return "DATA:\n  DATASET: image_folder\n", "DATA.ROOT is empty"
    if name != "missing_folder":
        image_folder(root, broken=name == "unreadable_image", empty=name == "empty_folder")
    expected = {"missing_folder": f"DATA.ROOT = '{root}' has no train/ folder",
                "empty_folder": f"DATA.ROOT = '{root}': train/ holds no images",
                "unreadable_image": f"cannot read image {root / 'train' / 'b' / '1.png'}"}[name]
    return f"DATA:\n  DATASET: image_folder\n  ROOT: {root}\n  IMAGE_SIZE: 12\n", expected


CASES = ([("yaml", *case) for case in YAML_VALUES + YAML_STRUCTURE]
         + [("cli", name, argv, expected) for name, argv, expected in COMMAND_LINES]
         + [("data", name, None, None) for name in DATA])


def test_the_matrix_has_at_least_forty_inputs():
    assert len(CASES) >= 60


@pytest.mark.parametrize("kind, name, payload, expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input_stops_before_touching_the_output_folder(tmp_path, capsys, kind, name, payload, expected):
    output = tmp_path / "out"
    output.mkdir()
    for file, text in SENTINELS.items():
        (output / file).write_text(text)
    before = {file: os.stat(output / file).st_mtime_ns for file in SENTINELS}

    cfg_file, argv = tmp_path / "cfg.yaml", []
    text = f"OUTPUT_DIR: {output}\n"
    if kind == "yaml" and name in ("empty", "list"):
        text = payload  # the whole file
    elif kind == "yaml" and payload is not None:
        text += payload
    elif kind == "cli":
        argv = payload
    elif kind == "data":
        extra, expected = data_case(name, tmp_path)
        text += extra
    if not (kind == "yaml" and payload is None):
        cfg_file.write_text(text)
    if kind == "cli" and name == "odd":
        argv = ["OUTPUT_DIR", str(output)] + argv  # the odd item must come last

    code = train_net.run(train_net.main, ["--cfg", str(cfg_file), *argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert sorted(os.listdir(output)) == sorted(SENTINELS)  # nothing new, nothing removed ...
    for file, text in SENTINELS.items():  # ... and nothing rewritten
        assert (output / file).read_text() == text and os.stat(output / file).st_mtime_ns == before[file]


@pytest.mark.slow
def test_a_run_that_keeps_failing_on_non_finite_losses_stops_with_an_error(tmp_path, run_tool):
    from tests.tools.conftest import train_command

    # An absurd lr makes every loss after the first update non-finite: 3 skips in a row stop the run.
    result = run_tool(train_command(tmp_path, "SOLVER.OPTIMIZER.BASE_LR", "1e30", "SOLVER.SCHEDULER.WARM_UP_ITERS",
                                    "0", "TRAIN.MAX_CONSECUTIVE_SKIPS", "3"))
    assert result.returncode == 2
    assert re.fullmatch(r"error: 3 updates in a row \(iterations \d+ to \d+\) were skipped for non-finite losses "
                        r"or gradients .*--resume\n", result.stderr.splitlines()[-1] + "\n")
    assert (tmp_path / "model_last_good.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_last_good.pth\n"


@pytest.mark.parametrize("where", ["a_file", "under_a_file", "nul_byte"])
def test_an_output_dir_that_cannot_be_a_folder_is_one_error_line(tmp_path, capsys, where):
    existing = tmp_path / "taken"
    existing.write_text("precious")
    output = {"a_file": str(existing), "under_a_file": str(existing / "run"), "nul_byte": f"{tmp_path}/ru\0n"}[where]
    code = train_net.run(train_net.main, ["--cfg", str(DEFAULT_CFG), "OUTPUT_DIR", output,
                                          "SOLVER.SCHEDULER.TOTAL_ITERS", "2", "SOLVER.SCHEDULER.STEPS", "(1,)"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: OUTPUT_DIR = {output!r}"), lines
    assert existing.read_text() == "precious" and sorted(os.listdir(tmp_path)) == ["taken"]


def test_a_config_file_that_is_not_utf8_is_one_error_line(tmp_path, capsys):
    cfg_file = tmp_path / "cfg.yaml"
    raw = b"SOLVER:\n  OPTIMIZER:\n    BASE_LR: 0.1 # \xff\xfe latin-1 comment\n"
    cfg_file.write_bytes(raw)
    code = train_net.run(train_net.main, ["--cfg", str(cfg_file), "OUTPUT_DIR", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    bad_byte = raw.index(b"\xff")
    assert code == 2 and lines == [f"error: config file {cfg_file} is not UTF-8 text (byte {bad_byte})"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, expected", [
    (lambda a: a["annotations"][0].update(bbox="4 4 9 9"), "has the bbox '4 4 9 9', not four numbers"),
    (lambda a: a["annotations"][0].pop("bbox"), "has the bbox None, not four numbers"),
    (lambda a: a["annotations"][0].update(category_id=99), "names the category 99"),
    (lambda a: a["images"][0].pop("file_name"), "has the file_name None, not a path inside the images folder"),
    (lambda a: a["images"][0].update(file_name="../../etc/passwd"), "has the file_name '../../etc/passwd'"),
    (lambda a: a["categories"][0].pop("name"), "needs an integer id and a name"),
    (lambda a: a["images"][0].update(id="first"), "the image id 'first' is not an integer"),
    (lambda a: a["images"][0].update(id=2 ** 70), "the image id 1180591620717411303424 is not an integer"),
    (lambda a: a["annotations"][0].update(bbox=[1e308, 5, 1e308, 20]), "not four numbers of pixels"),
    (lambda a: a["annotations"][0].update(iscrowd="no"), "has iscrowd 'no' or area"),
    (lambda a: a["images"][0].update(file_name="a\u0000b.png"), "not a path inside the images folder"),
    (lambda a: a.update(categories=[], annotations=[]), "holds no categories"),
    (None, "is not a file"),
])
def test_broken_coco_annotations_stop_before_training(tmp_path, capsys, shapes_root, change, expected):
    import json
    import shutil

    from tests.toy_detection import SHAPES_CFG, tiny_overrides

    root = tmp_path / "data"
    shutil.copytree(shapes_root, root)
    folder = next(p for p in root.iterdir() if p.is_dir())
    annotations = folder / "annotations" / "train.json"
    if change is None:
        annotations.unlink()
        annotations.mkdir()
    else:
        data = json.loads(annotations.read_text())
        change(data)
        annotations.write_text(json.dumps(data))
    overrides = tiny_overrides(str(root), str(tmp_path / "out"))
    coco = ["DATA.DATASET", "coco", "DATA.ROOT", str(folder), "DATA.COCO.TRAIN_IMAGES", "train",
            "DATA.COCO.TRAIN_JSON", "annotations/train.json", "DATA.COCO.VAL_IMAGES", "val",
            "DATA.COCO.VAL_JSON", "annotations/val.json"]
    code = train_net.run(train_net.main, ["--cfg", SHAPES_CFG, *overrides, *coco])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_a_run_never_ends_well_with_a_non_finite_model(tmp_path, capsys):
    output = tmp_path / "out"
    code = train_net.run(train_net.main, [
        "--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(output), "SOLVER.OPTIMIZER.TYPE", "tests.user_builders:PoisonedSGD",
        "TRAIN.BATCH_SIZE", "8", "SOLVER.SCHEDULER.TOTAL_ITERS", "6", "SOLVER.SCHEDULER.STEPS", "(4,)",
        "SOLVER.SCHEDULER.WARM_UP_ITERS", "0", "TRAIN.CHECKPOINT_PERIOD", "2"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert re.match(r"error: the model's weights hold inf or NaN at iteration 4 \(backbone\.conv1\.weight\), so "
                    r"model_0000004 was not saved; the newest good checkpoint is .*model_0000002\.pth", lines[0])
    assert (output / "last_checkpoint").read_text() == "model_0000002.pth\n"
    assert not (output / "model_final.pth").exists() and not (output / "model_last_good.pth").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A short run of the user builders with a checkpoint every 2 updates and model_best."""
    from tests.engine.test_user_builders import USER

    output = tmp_path_factory.mktemp("finished") / "run"
    code = train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(output), *USER, *SHORT,
                                          "TRAIN.BEST_METRIC", "val/accuracy", "TRAIN.EVAL_PERIOD", "2"])
    assert code == 0
    return output


SHORT = ["TRAIN.BATCH_SIZE", "8", "SOLVER.SCHEDULER.TOTAL_ITERS", "6", "SOLVER.SCHEDULER.STEPS", "(4,)",
         "SOLVER.SCHEDULER.WARM_UP_ITERS", "0", "TRAIN.CHECKPOINT_PERIOD", "2", "TRAIN.CHECKPOINTS_TO_KEEP", "5"]


def edit_checkpoint(folder, change):
    import torch

    path = folder / "model_final.pth"
    data = torch.load(path, weights_only=True)
    change(data)
    torch.save(data, path)


RESUME_CASES = [
    ("metrics_link", lambda f: (f / "metrics.json").unlink() or (f / "metrics.json").symlink_to(f / "config.yaml"),
     "refusing to follow the symbolic link"),
    ("log_folder", lambda f: (f / "log.txt").unlink() or (f / "log.txt").mkdir(), "log.txt is a folder"),
    ("lock_fifo", lambda f: (f / ".lock").unlink() or os.mkfifo(f / ".lock"), ".lock is not a regular file"),
    ("data_position", lambda f: edit_checkpoint(f, lambda d: d["trainer"].update(data_position=[2 ** 70, 0])),
     "holds the data position"),
    ("trainer_field", lambda f: edit_checkpoint(f, lambda d: d["trainer"].update(skipped_updates="x")),
     "does not fit this run (trainer)"),
    ("numpy_rng", lambda f: edit_checkpoint(f, lambda d: d["rng"][0]["numpy"].__setitem__(0, "BOGUS")),
     "holds RNG states that cannot be restored: its NumPy state"),
    ("no_rng", lambda f: edit_checkpoint(f, lambda d: d.update(rng=[None])), "RNG states that cannot be restored"),
    ("huge_iteration", lambda f: edit_checkpoint(f, lambda d: d.update(iteration=2 ** 70)),
     "not an integer in [0, 1e9]"),
    ("state_entry", lambda f: edit_checkpoint(f, lambda d: d["optimizers"][""]["state"].__setitem__(0, 5)),
     "does not fit this run (optimizers)"),
    ("marker_bytes", lambda f: (f / "last_checkpoint").write_bytes(b"\xff\xfe/../x"), "which is not a file in"),
]


@pytest.mark.parametrize("name, damage, expected", RESUME_CASES, ids=[case[0] for case in RESUME_CASES])
def test_a_refused_resume_writes_nothing(finished_run, tmp_path, capsys, name, damage, expected):
    import shutil

    from tests.engine.test_user_builders import USER

    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder, symlinks=True)
    for path in ("model_0000002.pth", "model_0000004.pth"):  # only model_final is there to resume from
        (folder / path).unlink()
    damage(folder)
    before = {p.name: (p.lstat().st_mtime_ns, p.lstat().st_size) for p in folder.iterdir() if p.name != ".lock"}
    code = train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(folder), *USER, *SHORT,
                                          "SOLVER.SCHEDULER.TOTAL_ITERS", "8", "--resume"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and expected in lines[0], lines
    after = {p.name: (p.lstat().st_mtime_ns, p.lstat().st_size) for p in folder.iterdir() if p.name != ".lock"}
    assert after == before


def test_a_run_never_deletes_or_reads_what_is_not_its_own(finished_run, tmp_path):
    import shutil

    import torch

    from tests.engine.test_user_builders import USER

    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder, symlinks=True)
    (folder / "model_0000001").mkdir()  # a folder of the user's, named like an FSDP checkpoint
    (folder / "model_0000001" / "notes.txt").write_text("mine")
    (folder / "model_0000003").write_text("mine too")  # a file of the user's, named like one without .pth
    elsewhere = tmp_path / "elsewhere.pth"
    shutil.copy(folder / "model_final.pth", elsewhere)
    (folder / "model_0000009.pth").symlink_to(elsewhere)  # newer than any: a resume would start there
    (folder / "model_0000005.pth").symlink_to(elsewhere)  # older than what the run keeps: pruning would meet it
    (folder / ".model_0000006.tmp-7").mkdir()  # what an FSDP run killed mid-write leaves
    (folder / "last_checkpoint").unlink()
    (folder / "model_final.pth").unlink()
    code = train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(folder), *USER, *SHORT,
                                          "SOLVER.SCHEDULER.TOTAL_ITERS", "8", "TRAIN.CHECKPOINTS_TO_KEEP", "1",
                                          "--resume"])
    assert code == 0
    assert (folder / "model_0000001" / "notes.txt").read_text() == "mine"  # never pruned
    assert (folder / "model_0000003").read_text() == "mine too"
    assert os.path.islink(folder / "model_0000009.pth") and os.path.islink(folder / "model_0000005.pth")
    assert torch.load(folder / "model_final.pth", weights_only=True)["iteration"] == 8
    assert not (folder / ".model_0000006.tmp-7").exists()


@pytest.mark.parametrize("make", ["fifo", "link"])
def test_a_checkpoint_that_is_a_fifo_or_a_link_is_never_read_for_weights(tmp_path, capsys, make):
    target = tmp_path / "weights.pth"
    if make == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(tmp_path / "missing.pth")
    code = train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(tmp_path / "out"),
                                          "MODEL.WEIGHTS", str(target)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines


def test_a_config_file_that_is_a_fifo_is_one_error_line(tmp_path, capsys):
    os.mkfifo(tmp_path / "cfg.yaml")
    code = train_net.run(train_net.main, ["--cfg", str(tmp_path / "cfg.yaml")])
    assert code == 2 and capsys.readouterr().err == f"error: config file {tmp_path / 'cfg.yaml'} is not a regular file\n"
