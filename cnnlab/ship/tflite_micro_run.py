"""Run as a script by `tflite_export.py`, in a process of its own: TensorFlow and TFLite Micro
never share a process with torch (both bring their own threading runtimes and loggers).

    python tflite_micro_run.py WORK

WORK holds `model.onnx` (fp32, input `images`, NCHW), `calibration.npy` and `test.npy`
(normalised images, NHWC float32) and `labels.npy`. The model is converted by onnx2tf to a
full-integer TFLite model (int8 weights per channel, int8 activations, int8 input and output),
calibrated on `calibration.npy`; the TFLite Micro interpreter then classifies every test image
as a microcontroller would, one at a time. Writes WORK/model.int8.tflite and prints progress
lines (`images DONE TOTAL`) then one JSON line: accuracy, images, the arena's parts in bytes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ARENA_LIMIT = 16 << 20  # what the interpreter may take; it reports what it used
PROGRESS_EVERY = 500


def convert(work: Path) -> bytes:
    import onnx2tf

    sample = np.load(work / "calibration.npy")
    if sample.shape[-1] == 3:
        # for a 3-channel input onnx2tf test-runs the model on sample images it would
        # download, unless this file is in its working folder: 20 calibration images, resized
        side = 128 // sample.shape[1]
        np.save(work / "calibration_image_sample_data_20x128x128x3_float32.npy",
                sample[:20].repeat(side, 1).repeat(side, 2).astype(np.float32))
    os.chdir(work)
    onnx2tf.convert(
        input_onnx_file_path=str(work / "model.onnx"), output_folder_path=str(work / "tf"),
        output_integer_quantized_tflite=True, quant_type="per-channel", batch_size=1,
        custom_input_op_name_np_data_path=[["images", str(work / "calibration.npy"),
                                            np.zeros(1, np.float32), np.ones(1, np.float32)]],
        not_use_onnxsim=True, non_verbose=True, verbosity="error")
    return (work / "tf" / "model_full_integer_quant.tflite").read_bytes()


def arena_parts(interpreter) -> dict[str, int]:
    """The arena's head (activations), tail (the interpreter's own structures) and total, as
    TFLite Micro's recording allocator reports them: it prints them on the C stderr."""
    with tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        text = caught.read().decode(errors="replace")
    parts = {}
    for line in text.splitlines():
        if "Arena allocation " in line:
            part, size = line.split("Arena allocation ")[1].split()[:2]
            parts[part] = int(size)
    return parts


def main(work: Path) -> None:
    model = convert(work)
    (work / "model.int8.tflite").write_bytes(model)
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model, arena_size=ARENA_LIMIT)
    given = interpreter.get_input_details(0)["quantization_parameters"]
    scale, zero = float(given["scales"][0]), int(given["zero_points"][0])
    images, labels = np.load(work / "test.npy"), np.load(work / "labels.npy")
    correct = 0
    for i, (image, label) in enumerate(zip(images, labels, strict=True), 1):
        quantized = np.clip(np.round(image[None] / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_input(quantized, 0)
        interpreter.invoke()
        correct += int(interpreter.get_output(0).argmax() == label)
        if i % PROGRESS_EVERY == 0 or i == len(labels):
            print(f"images {i} {len(labels)}", flush=True)
    print(json.dumps({"accuracy": round(100.0 * correct / len(labels), 4),
                      "images": len(labels), "arena": arena_parts(interpreter)}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
