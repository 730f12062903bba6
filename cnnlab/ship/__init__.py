"""Ship stage: a finished run usable without cnnlab's training code: weights as safetensors,
the model loaded for prediction, ONNX export, int8 (ONNX Runtime) and TFLite Micro exports."""

from cnnlab.run_folder.shipped_weights import write_safetensors
from cnnlab.ship.int8_export import export_int8
from cnnlab.ship.loaded_run import LoadedRun, Prediction, load_run
from cnnlab.ship.onnx_export import export_onnx
from cnnlab.ship.tflite_export import export_tflite

__all__ = ["LoadedRun", "Prediction", "export_int8", "export_onnx", "export_tflite", "load_run",
           "write_safetensors"]
