"""`cnnlab export RUN --tflite`: the run's model as a full-integer TFLite model, run by the
TFLite Micro interpreter as a microcontroller would, so that its RAM and accuracy are the
device's, not an estimate's.

The fp32 ONNX export goes through onnx2tf (ONNX -> TensorFlow -> TFLite's converter: int8
weights per channel, int8 activations, input and output), calibrated on the same training
images as `cnnlab export --int8`, normalised as the run read them; TFLite Micro then
classifies the whole test split one image at a time and reports the arena it allocated.
`model.int8.tflite` goes into the run folder, and `tflite.json` beside it holds the
interpreter's accuracy, the arena (activations, the interpreter's own structures, total), the
file's bytes, and cnnlab's RAM estimate from the graph (`max_ram_bytes`) to compare it with.
Both converter and interpreter run in a child process (tflite_micro_run.py): TensorFlow and
torch are kept out of each other's process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm  # a widget in Jupyter, text in a terminal

from cnnlab.data import Dataset
from cnnlab.errors import ConfigError, ConversionError
from cnnlab.inspection.cost import int8_ram_bytes
from cnnlab.prepare import prepare
from cnnlab.ship.int8_export import CALIBRATION_IMAGES, calibration_images, run_to_export
from cnnlab.ship.loaded_run import LoadedRun
from cnnlab.ship.onnx_export import onnx_bytes

TFLITE_FILE = "model.int8.tflite"
TFLITE_RECORD = "tflite.json"
CHILD = Path(__file__).with_name("tflite_micro_run.py")
NEEDED = ("tensorflow", "onnx2tf", "tflite_micro")


@dataclass
class TfliteResult:
    path: Path
    test_acc_tflm: float  # % on the whole test split, by the TFLite Micro interpreter
    arena_bytes: int  # the arena's head: the activations, as the runtime planned them
    arena_total_bytes: int  # ... plus its tail, the interpreter's own structures
    ram_estimate_bytes: int  # cnnlab's figure from the graph (`max_ram_bytes`)
    tflite_bytes: int  # the .tflite file: what flash holds
    calibration_images: int
    test_images: int

    def summary_line(self) -> str:
        ratio = self.ram_estimate_bytes / self.arena_bytes
        return (f"TFLite Micro {self.test_acc_tflm:.2f}% on {self.test_images:,} test images; "
                f"arena {self.arena_bytes:,} bytes of activations ({self.arena_total_bytes:,} "
                f"in all) against {self.ram_estimate_bytes:,} estimated ({ratio:.2f}x); "
                f"{self.tflite_bytes:,} bytes of .tflite")


def require_tflite() -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--tflite needs {', '.join(missing)}: pip install 'cnnlab[tflite]'")


def export_tflite(run_dir: str | Path, data_dir: str | Path | None = None,
                  trust_code: bool = False, calibration: int = CALIBRATION_IMAGES,
                  dataset: Dataset | None = None, progress: bool = True) -> TfliteResult:
    """Convert the run's best model to a full-integer `.tflite`, run it on the test split in
    TFLite Micro, and write `model.int8.tflite` and `tflite.json` into the run folder."""
    require_tflite()
    folder, loaded = run_to_export(run_dir, trust_code, calibration)
    prepared = prepare(folder=folder, data_dir=data_dir, trust_code=trust_code, progress=False)
    data = dataset if dataset is not None else prepared.data()
    chosen = calibration_images(data, calibration)
    with tempfile.TemporaryDirectory(prefix="cnnlab-tflite-") as tmp:
        work = Path(tmp)
        (work / "model.onnx").write_bytes(onnx_bytes(loaded.model, loaded.input_shape))
        np.save(work / "calibration.npy", _nhwc(loaded, chosen))
        np.save(work / "test.npy", _nhwc(loaded, data.test_images))
        np.save(work / "labels.npy", data.test_labels.numpy())
        figures = _run_child(work, len(data.test_labels), progress)
        model = (work / TFLITE_FILE).read_bytes()
    arena = figures["arena"]
    if not {"head", "total"} <= arena.keys():  # the recording allocator's report changed
        raise ConversionError(f"TFLite Micro ran the model but reported no arena ({arena}): "
                              "check the tflite-micro version (cnnlab reads its allocations)")
    result = TfliteResult(folder.file(TFLITE_FILE).path, figures["accuracy"], arena["head"],
                          arena["total"], int8_ram_bytes(prepared.inspection.graph),
                          len(model), len(chosen), figures["images"])
    folder.write_bytes(TFLITE_FILE, model)
    record = {k: v for k, v in asdict(result).items() if k != "path"}
    folder.write_text(TFLITE_RECORD, json.dumps(record, indent=1) + "\n")
    folder.log(f"tflite export: {result.summary_line()}")
    return result


def _run_child(work: Path, images: int, progress: bool) -> dict:
    """Convert and evaluate in tflite_micro_run.py's process; its progress lines drive a bar,
    its last line is the figures. A failure is one line: the converter's last words."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryFile("w+") as errors, \
            tqdm(total=images, desc="converting (onnx2tf)", unit="img", disable=not progress,
                 file=sys.stderr, leave=False) as bar:
        child = subprocess.Popen([sys.executable, str(CHILD), str(work)], stdout=subprocess.PIPE,
                                 stderr=errors, text=True, env=env)
        last = deque(maxlen=1)
        for line in child.stdout:
            if line.startswith("images "):
                bar.set_description("TFLite Micro", refresh=False)
                bar.update(int(line.split()[1]) - bar.n)
            elif line.startswith("{"):
                last.append(line)
        child.wait()
        errors.seek(0)
        said = [line.strip() for line in errors.read().splitlines() if line.strip()]
    if child.returncode != 0 or not last:
        reason = said[-1][:300] if said else f"exit status {child.returncode}"
        raise ConversionError(f"onnx2tf or TFLite Micro could not take this model ({reason}); "
                              "the int8 ONNX export (`cnnlab export RUN_DIR --int8`) may")
    return json.loads(last[0])


def _nhwc(loaded: LoadedRun, images: torch.Tensor) -> np.ndarray:
    return loaded.normalise(images).numpy().astype(np.float32).transpose(0, 2, 3, 1)
