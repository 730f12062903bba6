"""How far apart two int8 toolchains are on one run, image by image: the fp32 model, ONNX
Runtime's int8 model (`cnnlab export --int8`) and the full-integer .tflite (`cnnlab export
--tflite`, run here by LiteRT's reference kernels: an image or two from TFLite Micro's figure,
in a fraction of its time) on the whole test split. Prints each one's accuracy and how many
images each pair classifies differently, so an accuracy gap between the toolchains can be read
against the images each flips.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/int8_agreement.py RUN_DIR...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cnnlab.prepare import prepare
from cnnlab.run_folder import RunFolder
from cnnlab.ship.int8_runtime import session
from cnnlab.ship.loaded_run import load_run
from cnnlab.ship.tflite_runtime import tflite_predictions
from machine import machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    args = parser.parse_args()
    print(machine_line())
    for run_dir in args.run_dirs:
        folder = RunFolder.existing(run_dir)
        loaded = load_run(run_dir)
        data = prepare(folder=folder, progress=False).data()
        x = loaded.normalise(data.test_images).numpy().astype(np.float32)
        labels = data.test_labels.numpy()
        with torch.no_grad():
            fp32 = np.concatenate([loaded.model(torch.from_numpy(x[i:i + 1000])).argmax(1).numpy()
                                   for i in range(0, len(x), 1000)])
        ort = session(folder.int8_model())
        onnx_int8 = np.concatenate([ort.run(None, {"images": x[i:i + 1000]})[0].argmax(1)
                                    for i in range(0, len(x), 1000)])
        tflite = tflite_predictions(folder.path / "model.int8.tflite", x.transpose(0, 2, 3, 1))
        found = {"fp32": fp32, "onnx_int8": onnx_int8, "tflite": tflite}
        accuracy = " ".join(f"{k}={100 * (v == labels).mean():.2f}" for k, v in found.items())
        apart = " ".join(f"{a}_vs_{b}={int((found[a] != found[b]).sum())}"
                         for a, b in (("fp32", "onnx_int8"), ("fp32", "tflite"),
                                      ("onnx_int8", "tflite")))
        print(f"int8_agreement run={Path(run_dir).name} {accuracy} {apart} images={len(labels)}",
              flush=True)


if __name__ == "__main__":
    main()
