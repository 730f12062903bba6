"""A finished run, shipped: best.safetensors, `load_run(...).predict(...)`, ONNX export that
onnxruntime runs to the same logits."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.config import load_recipe
from cnnlab.errors import ConfigError
from cnnlab.run_folder.shipped_weights import read_safetensors
from tests.conftest import separable_dataset, train_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    recipe = load_recipe("mnist-s5-10ep", ["train.epochs=2", "data.batch_size=64",
                                        "train.device=cpu", "train.ema_decay=0.0"])
    data = separable_dataset()
    return train_run(recipe, dataset=data, out_dir=tmp_path_factory.mktemp("runs")), data


@pytest.mark.slow
def test_every_run_ships_its_best_weights_as_safetensors(trained):
    result, data = trained
    weights, meta = read_safetensors(result.run_dir / "best.safetensors")
    best = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert weights.keys() == best["model"].keys()
    assert all(torch.equal(weights[k], best["model"][k]) for k in weights)
    assert meta["classes"] == '["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]'
    assert meta["input_shape"] == "[1, 28, 28]"


@pytest.mark.slow
def test_load_run_predicts_from_any_image_layout(trained):
    result, data = trained
    loaded = cnnlab.load_run(result.run_dir)
    images, labels = data.test_images, data.test_labels  # uint8 [256, 1, 28, 28]
    batch = loaded.predict(images, topk=3)
    assert batch.indices.shape == (256, 3) and batch.probabilities.shape == (256, 3)
    assert (batch.probabilities[:, 0] >= batch.probabilities[:, 1]).all()
    # The shipped model is the best epoch's: its accuracy is the one the history recorded.
    accuracy = 100 * (batch.indices[:, 0] == labels).float().mean().item()
    assert accuracy == pytest.approx(result.best_accuracy, abs=1e-4)
    one = images[3]
    for layout in (one, one[0], one[0].numpy(), one.permute(1, 2, 0), one.float() / 255):
        single = loaded.predict(layout, topk=1)
        assert single.indices[0, 0] == batch.indices[3, 0]
        assert torch.allclose(single.probabilities[0, 0], batch.probabilities[3, 0], atol=1e-5)
    assert batch.classes[3][0] == str(int(batch.indices[3, 0]))
    with pytest.raises(ConfigError, match="do not fit this model"):
        loaded.predict(np.zeros((32, 32), np.uint8))


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["this torch's", "torchscript"])
def test_onnx_export_gives_the_same_logits_in_onnxruntime(trained, tmp_path, capsys,
                                                          monkeypatch, exporter):
    ort = pytest.importorskip("onnxruntime")
    if exporter == "torchscript":  # the path torch < 2.6 takes
        from cnnlab.ship import onnx_export
        monkeypatch.setattr(onnx_export, "DYNAMO_EXPORTER_FROM", (99, 0))
    result, data = trained
    assert main(["export", str(result.run_dir), "--onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert "m.onnx" in capsys.readouterr().out
    loaded = cnnlab.load_run(result.run_dir)
    x = loaded.normalise(data.test_images[:5])  # a batch size the export never saw
    with torch.inference_mode():
        expected = loaded.model(x).numpy()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"images": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4  # float32 kernels differ in rounding only


@pytest.mark.slow
def test_onnx_export_says_only_what_it_wrote(trained, tmp_path):
    """torch's exporter logs a warning per torchvision operator when torchvision is absent, as
    it is beside cnnlab: a user reads that as a missing dependency."""
    pytest.importorskip("onnx")
    result, _ = trained
    out = tmp_path / "m.onnx"
    done = subprocess.run([sys.executable, "-m", "cnnlab.cli", "export", str(result.run_dir),
                           "--onnx", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out}"
    assert done.stderr == ""
