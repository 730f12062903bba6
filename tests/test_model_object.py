"""A model given as an object, as a notebook does (`cnnlab.train(recipe, model=Net)`): a class,
a builder function or an instance trains, inspects and checks; its run folder keeps the code
and rebuilds the model in a fresh process, from another directory."""

import importlib.util
import subprocess
import sys
import textwrap

import pytest

import cnnlab
from cnnlab.config import load_recipe
from cnnlab.models.model_code import SOURCE_FILE
from tests.conftest import saved_as_npz, separable_dataset, train_run

NET_FILE = """
import torch
from torch import nn

WIDTH = 8


class Net(nn.Module):
    def __init__(self, num_classes=10, width=WIDTH):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def build(num_classes=10):
    return Net(num_classes, width=6)
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`Net` and `build` from a module file of the user's, imported as a notebook would."""
    path = tmp_path / "my_nets.py"
    path.write_text(NET_FILE)
    spec = importlib.util.spec_from_file_location("my_nets", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "my_nets", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def npz_recipe(tmp_path):
    data = separable_dataset(n_train=256, n_test=64)
    path = saved_as_npz(data, tmp_path)
    return load_recipe("mnist-s5-10ep", [f'data.path="{path}"', 'data.dataset="npz"',
                                      "data.batch_size=64", "train.epochs=2", "train.device=cpu"])


def _rebuilt_elsewhere(run_dir, cwd) -> str:
    """Open the run in a fresh interpreter from `cwd`: predict, and write the report."""
    code = textwrap.dedent(f"""
        import numpy as np, cnnlab
        run = cnnlab.load_run({str(run_dir)!r})
        print(run.predict(np.zeros((28, 28), np.uint8), topk=1).classes[0][0])
        print(cnnlab.write_report({str(run_dir)!r}))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("given", ["class", "builder", "instance"])
def test_a_model_object_trains_and_its_folder_rebuilds_it_in_a_fresh_process(
        user_module, npz_recipe, tmp_path, given):
    model = {"class": user_module.Net, "builder": user_module.build,
             "instance": user_module.Net()}[given]
    before = model.conv.weight.detach().clone() if given == "instance" else None
    result = train_run(npz_recipe, model=model, out_dir=tmp_path / "runs", enforce_spec=False)
    assert len(result.history) == 2
    config = result.run_dir / "config.toml"
    expected = "build" if given == "builder" else "Net"
    assert f'name = "{SOURCE_FILE}:{expected}"' in config.read_text()
    assert (result.run_dir / SOURCE_FILE).read_text() == NET_FILE
    if given == "instance":  # the very object the cell made is what trained
        assert not model.conv.weight.detach().equal(before)
    (tmp_path / "my_nets.py").unlink()  # the notebook's module is gone
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "README.md" in _rebuilt_elsewhere(result.run_dir, elsewhere)


@pytest.mark.slow
def test_a_model_defined_in_a_script_keeps_its_definitions_not_the_code_around_them(
        npz_recipe, tmp_path):
    script = tmp_path / "assignment.py"
    script.write_text(NET_FILE + textwrap.dedent(f"""
        import cnnlab
        recipe = cnnlab.load_recipe("mnist-s5-10ep", ['data.path="{npz_recipe.data.path}"',
            'data.dataset="npz"', "data.batch_size=64", "train.epochs=1", "train.device=cpu"])
        result = cnnlab.train(recipe, model=Net, out_dir={str(tmp_path / "runs")!r},
                            progress=False, report=False, enforce_spec=False)
        print(result.run_dir)
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_dir = done.stdout.strip().splitlines()[-1]
    kept = (tmp_path / "runs").joinpath(run_dir.rsplit("/", 1)[-1], SOURCE_FILE).read_text()
    assert "class Net" in kept and "WIDTH = 8" in kept and "def build" in kept
    assert "cnnlab.train(" not in kept and "print" not in kept  # nothing that trains or prints
    script.unlink()
    assert "README.md" in _rebuilt_elsewhere(run_dir, tmp_path)


def test_inspection_and_checks_take_a_class_too(user_module):
    table = cnnlab.summary(user_module.Net, (1, 28, 28))
    assert table.total_params == 8 * 9 + 8 + 16 + 8 * 10 + 10
    conv = cnnlab.receptive_field(user_module.build, (1, 28, 28)).rows[0]
    assert (conv.rout, conv.out_channels) == (3, 6)  # build() makes it 6 wide
    recipe = load_recipe("mnist-s5-10ep", ["spec.max_params=100"])
    report = cnnlab.check(recipe, model=user_module.Net)
    assert not report.passed and "parameters <= 100" in report.to_text()
@pytest.mark.slow


def test_a_model_whose_source_cannot_be_found_still_trains_and_says_what_its_folder_lacks(
        tmp_path):
    namespace = {}
    exec(compile(NET_FILE, "<generated>", "exec"), namespace)  # no file, no cell: no source
    with pytest.warns(UserWarning, match="cannot be kept"):
        result = train_run(load_recipe("mnist-s5-10ep", ["train.epochs=1", "train.device=cpu"]),
                           model=namespace["Net"], dataset=separable_dataset(64, 32),
                           out_dir=tmp_path, enforce_spec=False)
    assert (result.run_dir / "best.safetensors").is_file()
    pytest.importorskip("onnx")
    assert (result.run_dir / "model.onnx").stat().st_size > 1000  # shipped instead
    with pytest.raises(cnnlab.CnnlabError, match="keeps no copy"):
        cnnlab.load_run(result.run_dir)
