"""Model stage: reusable blocks, the seed models, and a registry of named builders."""

from cnnlab.models.parameters import count_parameters
from cnnlab.models.registration import register
from cnnlab.models.registry import (
    build_for_data,
    build_model,
    default_input_shape,
    is_registered,
    model_names,
)

__all__ = ["build_for_data", "build_model", "count_parameters", "default_input_shape",
           "is_registered", "model_names", "register"]
