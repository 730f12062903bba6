"""cnnlab: design, check, train fast and explain compact CNNs for MNIST and CIFAR-10."""

from cnnlab.config import Recipe, builtin_recipes, load_recipe
from cnnlab.data import Dataset, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models import build_model, count_parameters, model_names, register
from cnnlab.train import RunResult, train

__all__ = [
    "CnnlabError", "Dataset", "Recipe", "RunResult", "build_model", "builtin_recipes",
    "count_parameters", "load_dataset", "load_recipe", "model_names", "register", "train",
]
