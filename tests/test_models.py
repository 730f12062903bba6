import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError, ModelError
from cnnlab.models import build_model, count_parameters, default_input_shape, model_names, register
from tests.seed_tables import SEED_TABLES, SEED_TOTALS, parse


def _leaf_rows(model, input_shape=(1, 28, 28)):
    rows = []

    def hook(module, _inputs, output):
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append((type(module).__name__, tuple(output.shape[1:]), params))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, *input_shape))
    for handle in handles:
        handle.remove()
    return rows


@pytest.mark.parametrize("name", sorted(SEED_TABLES))
def test_seed_models_match_their_tables_row_by_row(name):
    model = build_model(name)
    assert _leaf_rows(model) == parse(SEED_TABLES[name])
    assert count_parameters(model) == SEED_TOTALS[name]


@pytest.mark.parametrize("name", ["mnist_pool", "mnist_strided"])
def test_cnnlab_mnist_models_meet_the_assignment_budget(name):
    model = build_model(name)
    kinds = {type(m) for m in model.modules()}
    assert count_parameters(model) < 20000
    assert {nn.BatchNorm2d, nn.Dropout, nn.AdaptiveAvgPool2d, nn.Linear} <= kinds
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_every_registered_model_builds_and_classifies():
    for name in model_names():
        shape = default_input_shape(name)
        assert build_model(name)(torch.zeros(2, *shape)).shape == (2, 10)
    assert default_input_shape("cifar_s9") == (3, 32, 32)
    assert default_input_shape("mnist_s4") == (1, 28, 28)


def test_model_args_reach_the_builder():
    model = build_model("mnist_s5", dropout=0.4)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.4}
    with pytest.raises(ModelError, match="does not accept"):
        build_model("mnist_s5", widht=3)


def test_user_model_from_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(
        "from torch import nn\n"
        "def tiny(width=4):\n"
        "    return nn.Sequential(nn.Conv2d(1, width, 3), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(width, 10))\n"
    )
    model = build_model(f"{path}:tiny", width=6)
    assert count_parameters(model) == 6 * 9 + 6 + 6 * 10 + 10
    # It names no dataset, so its input shape is asked for, never guessed.
    with pytest.raises(ModelError, match="give --input"):
        default_input_shape(f"{path}:tiny")


def test_registering_for_an_unknown_dataset_fails_at_once():
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        register(dataset="imagenet")


def test_user_model_from_module():
    model = build_model("cnnlab.models.mnist:mnist_s4")
    assert count_parameters(model) == 18650


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("resnet9000", "unknown model"),
        ("/nowhere/net.py:build", "not found"),
        ("cnnlab.models.mnist:nope", "no function"),
        ("no_such_module_xyz:fn", "cannot import"),
    ],
)
def test_bad_model_references(spec, message):
    with pytest.raises(ModelError, match=message):
        build_model(spec)


def test_user_file_that_fails_to_import(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ModelError, match="boom"):
        build_model(f"{path}:fn")


@pytest.mark.parametrize(("name", "shape"), [
    ("mnist_s4", (1, 28, 28)), ("mnist_s5", (1, 28, 28)), ("mnist_26k", (1, 28, 28)),
    ("cifar_s9", (3, 32, 32)), ("cifar_s10_resnet", (3, 32, 32)),
])
def test_seed_models_take_a_width_multiplier_for_searches_and_default_to_the_seed(name, shape):
    seed = count_parameters(build_model(name))
    assert count_parameters(build_model(name, width_multiplier=1.0)) == seed
    narrow, wide = build_model(name, width_multiplier=0.5), build_model(name, width_multiplier=1.5)
    assert count_parameters(narrow) < seed < count_parameters(wide)
    assert narrow(torch.zeros(2, *shape)).shape == (2, 10)


def test_former_model_names_in_older_run_folders_still_build():
    from cnnlab.models.registry import is_registered

    for former, current in (("mnist_fast", "mnist_pool"), ("mnist_lean", "mnist_strided")):
        assert is_registered(former) and former not in model_names()
        assert type(build_model(former, width=8)).__name__ == type(
            build_model(current, width=8)).__name__
        assert count_parameters(build_model(former, width=8)) == count_parameters(
            build_model(current, width=8))
