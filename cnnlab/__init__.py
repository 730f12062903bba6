"""cnnlab: design, check, train fast and explain compact CNNs for MNIST and CIFAR-10."""

from cnnlab.config import Recipe, builtin_recipes, load_recipe
from cnnlab.data import Dataset, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.inspect import check, receptive_field, summary
from cnnlab.models import build_model, count_parameters, model_names, register
from cnnlab.pipeline import RunResult, lr_find, run
from cnnlab.report import compare, write_report
from cnnlab.sweep import sweep

__all__ = [
    "CnnlabError", "Dataset", "Recipe", "RunResult", "build_model", "builtin_recipes", "check",
    "compare", "count_parameters", "load_dataset", "load_recipe", "lr_find", "model_names",
    "receptive_field", "register", "run", "summary", "sweep", "write_report",
]
