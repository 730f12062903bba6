"""Ship stage: a finished run usable without cnnlab's training code: weights as safetensors,
the model loaded for prediction, ONNX export."""

from cnnlab.run_folder.shipped_weights import write_safetensors
from cnnlab.ship.loaded_run import LoadedRun, Prediction, load_run
from cnnlab.ship.onnx_export import export_onnx

__all__ = ["LoadedRun", "Prediction", "export_onnx", "load_run", "write_safetensors"]
