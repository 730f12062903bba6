"""cnnlab: design, check, train fast and explain compact CNNs for MNIST, CIFAR-10 and your own
images."""

from importlib.metadata import PackageNotFoundError, version

from cnnlab.check import check
from cnnlab.config import Recipe, builtin_recipes, load_recipe
from cnnlab.data import Dataset, load_dataset
from cnnlab.design import design
from cnnlab.errors import CnnlabError
from cnnlab.inspection import receptive_field, summary
from cnnlab.models import build_model, count_parameters, model_names, register
from cnnlab.pipeline import lr_find, resume, train
from cnnlab.report import compare, write_report
from cnnlab.run_result import RunResult
from cnnlab.ship import export_int8, export_onnx, export_tflite, load_run
from cnnlab.sweep import sweep

try:
    __version__ = version("cnnlab")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CnnlabError", "Dataset", "Recipe", "RunResult", "build_model", "builtin_recipes", "check",
    "compare", "count_parameters", "design", "export_int8", "export_onnx", "export_tflite",
    "load_dataset", "load_recipe",
    "load_run", "lr_find", "model_names", "receptive_field", "register", "resume", "summary",
    "sweep", "train", "write_report",
]
