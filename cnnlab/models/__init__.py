"""Model stage: reusable blocks, the seed models, and a registry of named builders."""

from cnnlab.models.blocks import count_parameters
from cnnlab.models.registry import build_model, model_names, register

__all__ = ["build_model", "count_parameters", "model_names", "register"]
