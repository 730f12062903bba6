"""int8 export: static quantization on ONNX Runtime, the int8 accuracy on the whole test split
beside the fp32 one, the int8 model used by predict and the app, and its file checked as every
run-folder file is."""

import json

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from tests.conftest import trained_array_run

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run trained on arrays on disk (export reads its data as the run did), exported."""
    root = tmp_path_factory.mktemp("int8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_CONFIG_DIR", str(root / "config"))
        run, images, labels = trained_array_run(root)
        assert main(["export", str(run), "--int8", "--calibration", "256"]) == 0
    return root, run, images, labels


@pytest.mark.slow
def test_the_int8_model_is_measured_on_the_whole_test_split_by_onnx_runtime(exported):
    import onnx
    import onnxruntime

    root, run, images, labels = exported
    record = json.loads((run / "int8.json").read_text())
    assert record["test_images"] == len(labels) == 260 and record["calibration_images"] == 256
    model = onnx.load(str(run / "model.int8.onnx"))
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights, "no int8 weights in the int8 model"
    # the figure is what the runtime computes on the run's normalisation
    loaded = cnnlab.load_run(run)
    x = loaded.normalise(torch.from_numpy(images)).numpy()
    session = onnxruntime.InferenceSession(str(run / "model.int8.onnx"))
    predicted = session.run(None, {"images": x})[0].argmax(1)
    assert record["test_acc_int8"] == pytest.approx(100 * (predicted == labels).mean(), abs=1e-3)
    fp32 = loaded.model(torch.from_numpy(x)).argmax(1).numpy()
    assert record["test_acc_fp32"] == pytest.approx(100 * (fp32 == labels).mean(), abs=1e-3)
    assert abs(record["test_acc_int8"] - record["test_acc_fp32"]) < 5
    int8 = loaded.predict(images[:50], topk=1, int8=True)
    assert (int8.indices[:, 0].numpy() == predicted[:50]).all()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_CONFIG_DIR", str(root / "config"))
        assert main(["report", str(run)]) == 0
    assert f"**{record['test_acc_int8']:.2f}%**" in (run / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing", "truncated", "not a model", "a link"])
def test_a_damaged_or_missing_int8_model_is_one_line(exported, tmp_path, capsys, damage):
    import shutil

    root, run, images, _ = exported
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    model = copy / "model.int8.onnx"
    if damage == "missing":
        model.unlink()
    elif damage == "truncated":
        model.write_bytes(model.read_bytes()[:500])
    elif damage == "not a model":
        model.write_text("hello")
    else:
        model.unlink()
        model.symlink_to(run / "model.int8.onnx")
    with pytest.raises(cnnlab.errors.CnnlabError) as info:
        cnnlab.load_run(copy).predict(images[:2], int8=True)
    assert "model.int8.onnx" in str(info.value) or "int8 model" in str(info.value)
    pytest.importorskip("gradio")
    from cnnlab.ship.web_app import build_app

    with pytest.raises(cnnlab.errors.CnnlabError):
        build_app(copy, int8=True)


def test_a_conv_applied_twice_ships_its_int8_weights_once():
    """compact_cnn(reuse=...) calls one conv module again: the int8 file, like the parameter
    count and the flash estimate, holds its weights once."""
    import onnx
    from onnx import numpy_helper

    from cnnlab.inspection.summary import summary
    from cnnlab.ship.int8_export import flash_bytes, quantized
    from cnnlab.ship.onnx_export import onnx_bytes

    torch.manual_seed(0)
    calibration = torch.rand(64, 1, 28, 28).numpy()
    args = {"widths": [6, 8], "depths": 2, "transition": "maxpool"}
    files, estimates = {}, {}
    for reuse in ((0, 0), (0, 2)):
        model = cnnlab.build_model("compact_cnn", **args, reuse=list(reuse)).eval()
        files[reuse] = quantized(onnx_bytes(model, (1, 28, 28)), calibration)
        estimates[reuse] = summary(model, (1, 28, 28)).int8_flash_bytes
        shapes = [numpy_helper.to_array(t).shape
                  for t in onnx.load_from_string(files[reuse]).graph.initializer
                  if t.data_type == onnx.TensorProto.INT8]
        assert shapes.count((8, 8, 3, 3)) == 1, shapes  # stage 2's last conv: one copy
    one_copy = 8 * 8 * 3 * 3
    grown = flash_bytes(files[(0, 2)]) - flash_bytes(files[(0, 0)])
    assert 0 < grown < one_copy  # two more calls: their BatchNorms and scales, no weights
    assert 0 < estimates[(0, 2)] - estimates[(0, 0)] < one_copy
