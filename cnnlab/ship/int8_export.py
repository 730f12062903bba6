"""int8 export: static post-training quantization with ONNX Runtime, the runtime that will run
the model, and the int8 model's accuracy on the whole test split measured by that runtime.

The fp32 ONNX export (onnx_export.py) is pre-processed (shape inference, Conv+BatchNorm
folded) and quantized QDQ: weights int8 per output channel, activations int8 per tensor,
biases int32, calibrated (MinMax) on training images read and normalised as the run read
them. `model.int8.onnx` goes into the run folder, and `int8.json` beside it holds its test
accuracy next to the fp32 model's on the same images, its flash bytes (int8 weights, int32
biases, fp32 scales, as the file's initializers hold them) and the calibration used; the
run's README and `cnnlab report` show both figures.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import Dataset
from cnnlab.errors import ConfigError
from cnnlab.prepare import prepare
from cnnlab.run_folder import RunFolder
from cnnlab.ship.int8_runtime import require_ort, session
from cnnlab.ship.loaded_run import LoadedRun, load_run
from cnnlab.ship.onnx_export import logs_quiet, onnx_bytes

INT8_FILE = "model.int8.onnx"
INT8_RECORD = "int8.json"
CALIBRATION_IMAGES = 1024  # MinMax ranges settle within a few hundred images of these nets
EVAL_BATCH = 1000


@dataclass
class Int8Result:
    path: Path
    test_acc_int8: float  # % on the whole test split, by ONNX Runtime
    test_acc_fp32: float  # the same images through the fp32 ONNX model
    flash_bytes: int  # weights, biases and quantization parameters in the int8 file
    calibration_images: int
    test_images: int

    def summary_line(self) -> str:
        return (f"int8 {self.test_acc_int8:.2f}% vs fp32 {self.test_acc_fp32:.2f}% on "
                f"{self.test_images:,} test images ({self.test_acc_int8 - self.test_acc_fp32:+.2f})"
                f", {self.flash_bytes:,} bytes of weights and parameters")


def export_int8(run_dir: str | Path, data_dir: str | Path | None = None,
                trust_code: bool = False, calibration: int = CALIBRATION_IMAGES,
                dataset: Dataset | None = None) -> Int8Result:
    """Quantize the run's best model to int8, measure it on the test split, and write
    `model.int8.onnx` and `int8.json` into the run folder. `dataset`: the run's data, already
    read (else read from `data_dir` as the run names it)."""
    require_ort()
    folder, loaded = run_to_export(run_dir, trust_code, calibration)
    data = dataset if dataset is not None else prepare(
        folder=folder, data_dir=data_dir, trust_code=trust_code, progress=False).data()
    fp32 = onnx_bytes(loaded.model, loaded.input_shape)
    chosen = calibration_images(data, calibration)
    int8 = quantized(fp32, _normalised(loaded, chosen))
    test_fp32 = accuracy(fp32, loaded, data.test_images, data.test_labels)
    test_int8 = accuracy(int8, loaded, data.test_images, data.test_labels)
    result = Int8Result(folder.file(INT8_FILE).path, test_int8, test_fp32, flash_bytes(int8),
                        len(chosen), len(data.test_labels))
    folder.write_bytes(INT8_FILE, int8)
    record = {k: v for k, v in asdict(result).items() if k != "path"}
    folder.write_text(INT8_RECORD, json.dumps(record, indent=1) + "\n")
    folder.log(f"int8 export: {result.summary_line()}")
    return result


def run_to_export(run_dir: str | Path, trust_code: bool, calibration: int
                  ) -> tuple[RunFolder, LoadedRun]:
    """What every int8 export starts from, checked before anything is read: the run folder, open
    for writing, and its best model loaded."""
    if calibration < 1:
        raise ConfigError("--calibration must be 1 image or more")
    folder = RunFolder.existing(run_dir)
    folder.require_writable()
    return folder, load_run(run_dir, trust_code)


def calibration_images(data: Dataset, count: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """The training images (uint8) the int8 ranges are calibrated on: `count` of them, drawn
    the same way every time, so that any converter calibrates on what the export did."""
    order = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(0))
    return data.train_images[order[:count]]


def quantized(fp32: bytes, calibration: np.ndarray) -> bytes:
    """The fp32 ONNX model `fp32` quantized QDQ (int8 weights per channel, int8 activations),
    its ranges calibrated on the normalised images `calibration` (NCHW float32)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(calibration, max(1, len(calibration) // 64)))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    # the quantizer warns through the root logger of every 1-d weight (a BatchNorm's scale)
    # it leaves per-tensor: noise, not the user's to act on
    with tempfile.TemporaryDirectory(prefix="cnnlab-int8-") as tmp, logs_quiet(""):
        source, prepared, out = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx",
                                                                "int8.onnx"))
        source.write_bytes(fp32)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        return out.read_bytes()


def accuracy(model: bytes, loaded: LoadedRun, images: torch.Tensor, labels: torch.Tensor
             ) -> float:
    """Top-1 accuracy (%) of the ONNX `model` on uint8 `images`, normalised as the run was."""
    runner = session(model)
    correct = 0
    for start in range(0, len(labels), EVAL_BATCH):
        batch = _normalised(loaded, images[start:start + EVAL_BATCH])
        logits = runner.run(None, {"images": batch})[0]
        correct += int((logits.argmax(1) == labels[start:start + EVAL_BATCH].numpy()).sum())
    return round(100.0 * correct / len(labels), 4)


def flash_bytes(model: bytes) -> int:
    """Bytes of the int8 model's initializers: int8 weights, int32 biases, float scales and
    int8 zero points, as a microcontroller's flash would hold them."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model).graph
    return sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)


def _normalised(loaded: LoadedRun, images: torch.Tensor) -> np.ndarray:
    return loaded.normalise(images).numpy().astype(np.float32)
