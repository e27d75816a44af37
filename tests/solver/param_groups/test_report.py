"""The parameter-group report: one row per group with tensors, parameters, lr and weight decay."""
from pet.config import get_cfg
from pet.solver import Optimizer, format_param_groups
from tests.toy_model import toy_model


def test_report_rows():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.02, "SOLVER.OPTIMIZER.BACKBONE_LR_FACTOR", 0.1])
    lines = format_param_groups(Optimizer(toy_model(), cfg.SOLVER.OPTIMIZER).build()).splitlines()
    assert lines[0].split() == ["group", "tensors", "parameters", "lr", "weight_decay"]
    rows = [line.split() for line in lines[1:]]
    # Counted by hand from ToyModel: cls_token 8, head.fc.bias 4, head.gn 8+8, decoder.bias 10;
    # backbone: pos_embed 32, conv.bias 8, bn 8+8, embed 80, ln 8+8; conv.weight 216; head.fc.weight 32.
    assert rows == [
        ["embed+bias+norm", "5", "38", "0.02", "0"],
        ["backbone.embed+bias+norm", "7", "152", "0.002", "0"],
        ["backbone.weight", "1", "216", "0.002", "0.0001"],
        ["weight", "1", "32", "0.02", "0.0001"],
    ]
