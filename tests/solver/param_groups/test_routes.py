"""Routes: which named optimizer takes which parameter, from selectors on names, modules and dimensions."""
import pytest
import torchvision

from pet.config import ConfigError
from pet.solver.param_groups.routes import Selector, route_parameters
from pet.solver.param_groups.rules import trainable_parameters

KEYS = {"a": "SOLVER.OPTIMIZERS.a", "b": "SOLVER.OPTIMIZERS.b", "rest": "SOLVER.OPTIMIZERS.rest"}


def resnet():
    return torchvision.models.resnet18(num_classes=10)


def test_selectors_narrow_each_other_and_the_rest_goes_to_the_entry_without_any():
    model = resnet()
    routes = route_parameters(model, {"a": Selector(modules=("layer1", "layer2"), min_ndim=2),
                                      "b": Selector(params=(r"fc\..*",)), "rest": Selector()}, KEYS)
    shapes = dict((name, param.dim()) for name, _, _, param in trainable_parameters(model))
    assert routes["a"] and all(name.startswith(("layer1.", "layer2.")) and shapes[name] >= 2 for name in routes["a"])
    assert routes["b"] == ["fc.weight", "fc.bias"]
    assert sorted(routes["a"] + routes["b"] + routes["rest"]) == sorted(shapes)  # each parameter exactly once
    assert "layer1.0.bn1.weight" in routes["rest"] and "conv1.weight" in routes["rest"]


def test_params_match_the_whole_name_not_a_part():
    model = resnet()
    assert route_parameters(model, {"a": Selector(params=(r"fc\.w.*", r"layer4\.1\.bn2\.bias"))}, KEYS) == {
        "a": ["layer4.1.bn2.bias", "fc.weight"]}  # "fc" alone would match nothing: not a search


@pytest.mark.parametrize("selectors, message", [
    ({"a": Selector(modules=("layer1",)), "b": Selector(min_ndim=4)},
     r"parameter layer1\.0\.conv1\.weight \(shape \(64, 64, 3, 3\)\) is selected by both SOLVER\.OPTIMIZERS\.a and "
     r"SOLVER\.OPTIMIZERS\.b"),
    ({"a": Selector(params=(r"fc",))}, r"SOLVER\.OPTIMIZERS\.a selects no trainable parameter \(PARAMS \('fc',\)\)"),
    ({"a": Selector(min_ndim=5)}, r"SOLVER\.OPTIMIZERS\.a selects no trainable parameter \(MIN_NDIM 5\)"),
    ({"a": Selector(), "rest": Selector()}, r"SOLVER\.OPTIMIZERS\.a and SOLVER\.OPTIMIZERS\.rest both select no"),
    ({"a": Selector(min_ndim=1), "rest": Selector()}, r"SOLVER\.OPTIMIZERS\.rest selects no trainable parameter "
                                                       r"\(the rest, of which none is left\)"),
])
def test_a_parameter_taken_twice_or_an_entry_that_takes_none_is_an_error(selectors, message):
    with pytest.raises(ConfigError, match=message):
        route_parameters(resnet(), selectors, KEYS)
