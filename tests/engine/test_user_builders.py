"""A user's own model and data set, named by the import paths of their builders, train through train_net; paths
that do not import, and builders that return the wrong thing, are one config error each."""
import json

import pytest

from pet.config import ConfigError, get_cfg
from pet.data import build_dataset
from pet.models import build_model
from tests.tools.test_cli_errors import DEFAULT_CFG, train_net

USER = ["MODEL.NAME", "tests.user_builders:tiny_net", "MODEL.NUM_CLASSES", "2",
        "DATA.DATASET", "tests.user_builders:bright_or_dark"]


def test_a_users_model_and_data_train_through_train_net(tmp_path, capsys):
    code = train_net.run(train_net.main, ["--cfg", DEFAULT_CFG, "OUTPUT_DIR", str(tmp_path), *USER,
                                          "SOLVER.SCHEDULER.TOTAL_ITERS", "30", "SOLVER.SCHEDULER.STEPS", "(25,)",
                                          "SOLVER.SCHEDULER.WARM_UP_ITERS", "5", "TRAIN.BATCH_SIZE", "16"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    assert rows[-1]["val/accuracy"] > 90  # the task is easy: the builders were used, not digits and resnet18
    assert "val/top5_accuracy" not in rows[-1]  # 2 classes


@pytest.mark.parametrize("overrides, message", [
    (["MODEL.NAME", "no_such_pkg.models:net"], r"MODEL.NAME = 'no_such_pkg.models:net': cannot import no_such_pkg"),
    (["MODEL.NAME", "tests.user_builders:nothing"], r"tests.user_builders has nothing named 'nothing'"),
    (["MODEL.NAME", "tests.user_builders:not_a_model"], r"returned a str, not a torch.nn.Module"),
    (["MODEL.NAME", "tests.user_builders:bright_or_dark"], r"'tests.user_builders:bright_or_dark' is not a function "
                                                            r"of \(cfg\)"),
    (["DATA.DATASET", "tests.user_builders:tiny_net"], r"DATA.DATASET = 'tests.user_builders:tiny_net' is not a "
                                                       r"function of \(cfg, split\)"),
])
def test_bad_builders_are_one_config_error(overrides, message):
    cfg = get_cfg()
    cfg.merge_from_list(overrides)
    with pytest.raises(ConfigError, match=message):
        build_model(cfg) if overrides[0] == "MODEL.NAME" else build_dataset(cfg, "train")
