"""The int8 `.tflite` file run in Python: LiteRT's interpreter on its reference kernels, the
arithmetic TFLite Micro runs on a microcontroller, for reading the file's predictions
without a board (the `tflite` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tflite_predictions(model_path: str | Path, images: np.ndarray) -> np.ndarray:
    """The class the file predicts for each of `images`: normalised float32, NHWC (the layout
    the converter gives the file), quantized to its int8 input as a device's code would."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(model_path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    given, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = given["quantization"]
    predicted = np.empty(len(images), dtype=np.int64)
    for i, image in enumerate(images):  # the file's batch is one image, as on a device
        quantized = np.clip(np.round(image[None] / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(given["index"], quantized)
        interpreter.invoke()
        predicted[i] = int(interpreter.get_tensor(out["index"]).argmax())
    return predicted
