import re

import pytest
import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models import build_model, count_parameters, model_names

# The seeds' torchsummary tables (shared/seeds/*.md): layer type, output shape, parameters.
SEED_TABLES = {
    "mnist_s4": """
Conv2d [16,28,28] 144; ReLU [16,28,28] 0; BatchNorm2d [16,28,28] 32; Conv2d [16,28,28] 2304;
ReLU [16,28,28] 0; BatchNorm2d [16,28,28] 32; Conv2d [64,28,28] 9216; ReLU [64,28,28] 0;
BatchNorm2d [64,28,28] 128; MaxPool2d [64,14,14] 0; Conv2d [8,14,14] 512; ReLU [8,14,14] 0;
Conv2d [16,12,12] 1152; ReLU [16,12,12] 0; BatchNorm2d [16,12,12] 32; Dropout2d [16,12,12] 0;
Conv2d [16,10,10] 2304; ReLU [16,10,10] 0; BatchNorm2d [16,10,10] 32; Conv2d [16,10,10] 256;
ReLU [16,10,10] 0; Conv2d [16,8,8] 2304; ReLU [16,8,8] 0; BatchNorm2d [16,8,8] 32;
AvgPool2d [16,1,1] 0; Linear [10] 170""",
    "mnist_s5": """
Conv2d [16,28,28] 160; ReLU [16,28,28] 0; BatchNorm2d [16,28,28] 32; Conv2d [16,26,26] 2320;
ReLU [16,26,26] 0; BatchNorm2d [16,26,26] 32; MaxPool2d [16,13,13] 0; Dropout [16,13,13] 0;
Conv2d [16,13,13] 2320; ReLU [16,13,13] 0; BatchNorm2d [16,13,13] 32; Conv2d [32,13,13] 4640;
ReLU [32,13,13] 0; BatchNorm2d [32,13,13] 64; Conv2d [16,7,7] 4624; ReLU [16,7,7] 0;
BatchNorm2d [16,7,7] 32; MaxPool2d [16,3,3] 0; Dropout [16,3,3] 0; Conv2d [32,3,3] 4640;
ReLU [32,3,3] 0; BatchNorm2d [32,3,3] 64; MaxPool2d [32,1,1] 0; Dropout [32,1,1] 0;
Linear [10] 330""",
    "mnist_26k": """
Conv2d [8,26,26] 80; ReLU [8,26,26] 0; BatchNorm2d [8,26,26] 16; Dropout [8,26,26] 0;
Conv2d [16,24,24] 1168; ReLU [16,24,24] 0; BatchNorm2d [16,24,24] 32; Dropout [16,24,24] 0;
Conv2d [32,22,22] 4640; ReLU [32,22,22] 0; BatchNorm2d [32,22,22] 64; Dropout [32,22,22] 0;
Conv2d [8,22,22] 264; ReLU [8,22,22] 0; BatchNorm2d [8,22,22] 16; Dropout [8,22,22] 0;
Conv2d [16,20,20] 1168; ReLU [16,20,20] 0; BatchNorm2d [16,20,20] 32; Dropout [16,20,20] 0;
Conv2d [32,18,18] 4640; ReLU [32,18,18] 0; BatchNorm2d [32,18,18] 64; Dropout [32,18,18] 0;
MaxPool2d [32,9,9] 0; Conv2d [8,9,9] 264; ReLU [8,9,9] 0; BatchNorm2d [8,9,9] 16;
Dropout [8,9,9] 0; Conv2d [16,7,7] 1168; ReLU [16,7,7] 0; BatchNorm2d [16,7,7] 32;
Dropout [16,7,7] 0; Conv2d [32,5,5] 4640; Linear [10] 8010""",
}
SEED_TOTALS = {"mnist_s4": 18650, "mnist_s5": 19290, "mnist_26k": 26314}


def _parse(table):
    rows = []
    for entry in table.replace("\n", " ").split(";"):
        kind, shape, params = re.match(r"\s*(\w+) \[([\d,]+)\] (\d+)", entry).groups()
        rows.append((kind, tuple(int(s) for s in shape.split(",")), int(params)))
    return rows


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
    assert _leaf_rows(model) == _parse(SEED_TABLES[name])
    assert count_parameters(model) == SEED_TOTALS[name]


def test_mnist_fast_meets_the_assignment_budget():
    model = build_model("mnist_fast")
    kinds = {type(m) for m in model.modules()}
    assert count_parameters(model) < 20000
    assert {nn.BatchNorm2d, nn.Dropout, nn.AdaptiveAvgPool2d, nn.Linear} <= kinds
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_every_registered_model_builds_and_classifies():
    for name in model_names():
        assert build_model(name)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


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
