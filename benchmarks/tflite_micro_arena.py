"""The int8 RAM figure (`cnnlab summary`'s "RAM", `max_ram_bytes`) against a real
microcontroller runtime, for several runs in one go: `cnnlab export RUN --tflite` on each
(onnx2tf's full-integer model, run by the TFLite Micro interpreter on the whole test split),
printed as one machine-readable line per run beside the ONNX Runtime int8 figure.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/tflite_micro_arena.py RUN_DIR...

Needs `pip install 'cnnlab[tflite]'` (in `make test`'s environment). Writes each run's
model.int8.tflite and tflite.json, as the verb does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.models import count_parameters
from cnnlab.run_folder import RunFolder
from cnnlab.ship.loaded_run import load_run
from cnnlab.ship.tflite_export import export_tflite
from machine import machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    args = parser.parse_args()
    print(machine_line())
    for run_dir in args.run_dirs:
        result = export_tflite(run_dir, progress=False)
        params = count_parameters(load_run(run_dir).model)
        onnx_int8 = (RunFolder.existing(run_dir).int8_record() or {}).get("test_acc_int8")
        print(f"tflite_micro run={Path(run_dir).name} params={params} "
              f"estimate_ram={result.ram_estimate_bytes} arena_activations={result.arena_bytes} "
              f"ratio={result.ram_estimate_bytes / result.arena_bytes:.3f} "
              f"arena_total={result.arena_total_bytes} tflite_bytes={result.tflite_bytes} "
              f"tflm_int8_acc={result.test_acc_tflm} onnx_int8_acc={onnx_int8} "
              f"images={result.test_images}", flush=True)


if __name__ == "__main__":
    main()
