"""`cnnlab export --tflite`: a full-integer .tflite through onnx2tf, run by TFLite Micro on the
whole test split; its accuracy and arena in tflite.json and the README; without the extra,
one line saying which to install."""

import importlib.util
import json

import numpy as np
import pytest

import cnnlab
from cnnlab.cli import main
from cnnlab.ship.tflite_runtime import tflite_predictions
from tests.conftest import trained_array_run


def test_without_the_extra_the_verb_says_what_to_install(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnx2tf" else real(name, *a))
    assert main(["export", str(tmp_path), "--tflite"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert said == ["cnnlab: error: --tflite needs onnx2tf: pip install 'cnnlab[tflite]'"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    # found, not imported: TensorFlow stays out of the test process, as it stays out of cnnlab's
    missing = [name for name in ("tensorflow", "onnx2tf", "tflite_micro", "onnxruntime",
                                 "ai_edge_litert") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: pip install 'cnnlab[tflite]'")
    root = tmp_path_factory.mktemp("tflite")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_CONFIG_DIR", str(root / "config"))
        run, images, labels = trained_array_run(root)
        assert main(["export", str(run), "--int8", "--tflite", "--calibration", "256",
                     "--no-progress"]) == 0
        assert main(["report", str(run)]) == 0
    return run, images, labels


@pytest.mark.slow
def test_the_tflite_model_is_int8_and_measured_on_the_whole_test_split(converted):
    run, images, labels = converted
    record = json.loads((run / "tflite.json").read_text())
    assert record["test_images"] == len(labels) == 260 and record["calibration_images"] == 256
    # the figure is what another TFLite runtime computes on the file: LiteRT's interpreter,
    # on the int8 input the run's normalisation makes
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(run / "model.int8.tflite"))
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    x = cnnlab.load_run(run).normalise(images).numpy().transpose(0, 2, 3, 1)
    predicted = tflite_predictions(run / "model.int8.tflite", x)
    assert record["test_acc_tflm"] == pytest.approx(100 * (predicted == labels).mean(),
                                                    abs=0.4)  # one image: kernels may round apart
    # two quantizers of one model: within a few images of each other
    int8 = json.loads((run / "int8.json").read_text())
    assert abs(record["test_acc_tflm"] - int8["test_acc_int8"]) < 2
    # the arena's activations as cnnlab estimates them from the graph (max_ram_bytes), to the
    # byte: the same tensors, lifetimes and planner
    assert record["ram_estimate_bytes"] == record["arena_bytes"]
    assert record["arena_total_bytes"] > record["arena_bytes"]
    assert record["tflite_bytes"] == (run / "model.int8.tflite").stat().st_size
    assert f"**{record['test_acc_tflm']:.2f}%**" in (run / "README.md").read_text()


@pytest.mark.slow
def test_a_damaged_tflite_record_is_one_line(converted, tmp_path, capsys):
    import shutil

    run, _, _ = converted
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    record = json.loads((copy / "tflite.json").read_text())
    record["arena_bytes"] = -1
    (copy / "tflite.json").write_text(json.dumps(record))
    assert main(["report", str(copy)]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "tflite.json" in said[0] and "--tflite" in said[0]


@pytest.mark.slow
def test_a_model_the_converter_refuses_is_one_line_and_writes_nothing(converted, tmp_path,
                                                                       monkeypatch, capsys):
    import shutil

    from cnnlab.ship import tflite_export

    run, _, _ = converted
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for name in ("model.int8.tflite", "tflite.json"):
        (copy / name).unlink()
    refusing = tmp_path / "refusing.py"
    refusing.write_text("import sys\nprint('Traceback (most recent call last):', file=sys.stderr)\n"
                        "print('NotImplementedError: op GridSample', file=sys.stderr)\n"
                        "sys.exit(1)\n")
    monkeypatch.setattr(tflite_export, "CHILD", refusing)
    assert main(["export", str(copy), "--tflite", "--no-progress"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "NotImplementedError: op GridSample" in said[0]
    assert not (copy / "model.int8.tflite").exists() and not (copy / "tflite.json").exists()
