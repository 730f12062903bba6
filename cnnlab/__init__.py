"""cnnlab: design, check, train fast and explain compact CNNs for MNIST and CIFAR-10."""

from cnnlab.config import Recipe, builtin_recipes, load_recipe
from cnnlab.data import Dataset, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.inspect import check, receptive_field, summary
from cnnlab.models import build_model, count_parameters, model_names, register
from cnnlab.pipeline import lr_find, train
from cnnlab.report import compare, write_report
from cnnlab.train import RunResult

__all__ = [
    "CnnlabError", "Dataset", "Recipe", "RunResult", "build_model", "builtin_recipes", "check",
    "count_parameters", "load_dataset", "load_recipe", "model_names", "receptive_field",
    "register", "summary", "train", "compare", "write_report", "lr_find",
]
