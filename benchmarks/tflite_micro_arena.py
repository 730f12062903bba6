"""The int8 RAM figure (`cnnlab summary`'s "RAM", `max_ram_bytes`) against a real
microcontroller runtime: each run's best model exported to ONNX, converted to a full-integer
TFLite model (onnx2tf, weights per channel, calibrated on the same 1,024 training images as
`cnnlab export --int8`), then run by the TFLite Micro interpreter on the test split: its
accuracy beside the ONNX Runtime int8 figure, and the arena it allocated beside cnnlab's
estimate from the graph.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/tflite_micro_arena.py RUN_DIR... \
        --tflite-python /path/to/venv/bin/python

TensorFlow, onnx2tf and tflite-micro are not cnnlab's dependencies (TensorFlow alone is a
~600 MB install); `--tflite-python` names a Python that has them:
`pip install tensorflow-cpu onnx2tf onnx_graphsurgeon sng4onnx onnxsim psutil tf_keras
ai-edge-litert && pip install --pre tflite-micro`. Prints one line per run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.inspection.cost import int8_ram_bytes
from cnnlab.models import count_parameters
from cnnlab.prepare import prepare
from cnnlab.run_folder import RunFolder
from cnnlab.ship.int8_export import calibration_images
from cnnlab.ship.loaded_run import load_run
from cnnlab.ship.onnx_export import onnx_bytes
from machine import machine_line

# Runs under --tflite-python: convert, then run every test image through TFLite Micro.
CONVERT_AND_RUN = r'''
import json, os, subprocess, sys, numpy as np
work = sys.argv[1]
onnx2tf = os.path.join(os.path.dirname(sys.executable), "onnx2tf")
# For a 3-channel input onnx2tf test-runs the model on sample images it downloads unless the
# file is in its working folder: give it 20 of the calibration images, at the size it wants.
sample = np.load(f"{work}/calibration.npy")[:20]
if sample.shape[-1] == 3:
    side = 128 // sample.shape[1]
    np.save(f"{work}/calibration_image_sample_data_20x128x128x3_float32.npy",
            sample.repeat(side, 1).repeat(side, 2).astype(np.float32))
subprocess.run([onnx2tf, "-i", f"{work}/model.onnx", "-o", f"{work}/tf", "-b", "1", "-oiqt",
                "-qt", "per-channel", "-cind", "images", f"{work}/calibration.npy", "[0.0]",
                "[1.0]", "-n"], check=True, capture_output=True, cwd=work)
from tflite_micro.python.tflite_micro import runtime
path = f"{work}/tf/model_full_integer_quant.tflite"
interpreter = runtime.Interpreter.from_file(path, arena_size=4 << 20)
given = interpreter.get_input_details(0)["quantization_parameters"]
scale, zero = given["scales"][0], given["zero_points"][0]
images, labels = np.load(f"{work}/test.npy"), np.load(f"{work}/labels.npy")
correct = 0
for image, label in zip(images, labels):
    interpreter.set_input(np.clip(np.round(image[None] / scale + zero), -128, 127)
                          .astype(np.int8), 0)
    interpreter.invoke()
    correct += int(interpreter.get_output(0).argmax() == label)
print(json.dumps({"accuracy": round(100.0 * correct / len(labels), 4), "images": len(labels),
                  "tflite_bytes": len(open(path, "rb").read())}), flush=True)
interpreter.print_allocations()  # the runtime's own report, on stderr
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--tflite-python", required=True,
                        help="a Python with tensorflow, onnx2tf and tflite-micro")
    parser.add_argument("--images", type=int, help="test images (default: the whole split)")
    args = parser.parse_args()
    print(machine_line())
    for run_dir in args.run_dirs:
        run = RunFolder.existing(run_dir)
        loaded = load_run(run_dir)
        prepared = prepare(folder=run, progress=False)
        data = prepared.data()
        estimate = int8_ram_bytes(prepared.inspection.graph)
        with tempfile.TemporaryDirectory(prefix="cnnlab-tflm-") as work:
            (Path(work) / "model.onnx").write_bytes(onnx_bytes(loaded.model, loaded.input_shape))
            np.save(f"{work}/calibration.npy", _nhwc(loaded, calibration_images(data)))
            count = args.images or len(data.test_labels)
            np.save(f"{work}/test.npy", _nhwc(loaded, data.test_images[:count]))
            np.save(f"{work}/labels.npy", data.test_labels[:count].numpy())
            done = subprocess.run([args.tflite_python, "-c", CONVERT_AND_RUN, work],
                                  capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{run_dir}: the conversion or TFLite Micro failed:\n"
                             f"{done.stderr[-3000:]}")
        figures = json.loads(next(line for line in done.stdout.splitlines()
                                  if line.startswith("{")))
        arena = {part: int(size) for part, size in
                 (line.split("Arena allocation ")[1].split()[:2] for line in
                  (done.stdout + done.stderr).splitlines() if "Arena allocation " in line)}
        onnx_int8 = (run.int8_record() or {}).get("test_acc_int8")
        print(f"tflite_micro run={Path(run_dir).name} params={count_parameters(loaded.model)} "
              f"estimate_ram={estimate} arena_activations={arena['head']} "
              f"ratio={estimate / arena['head']:.3f} arena_interpreter={arena['tail']} "
              f"arena_total={arena['total']} tflite_bytes={figures['tflite_bytes']} "
              f"tflm_int8_acc={figures['accuracy']} onnx_int8_acc={onnx_int8} "
              f"images={figures['images']}", flush=True)


def _nhwc(loaded, images: torch.Tensor) -> np.ndarray:
    return loaded.normalise(images).numpy().astype(np.float32).transpose(0, 2, 3, 1)


if __name__ == "__main__":
    main()
