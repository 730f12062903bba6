"""What `cnnlab summary|rf X` inspects: X is a recipe (its model, its dataset's input shape)
or a model (registry name or `file.py:function`)."""

from __future__ import annotations

from torch import nn

from cnnlab.config import builtin_recipes, load_recipe
from cnnlab.errors import ConfigError
from cnnlab.models import build_model, default_input_shape
from cnnlab.prepare import prepare


def load_subject(
    name: str, input_shape: tuple[int, int, int] | None = None
) -> tuple[nn.Module, tuple[int, int, int]]:
    if name in builtin_recipes() or name.endswith(".toml"):
        prepared = prepare(load_recipe(name), progress=False)
        return prepared.model, input_shape or prepared.input_shape
    model = build_model(name)  # an unknown name fails here, before the shape is asked for
    return model, input_shape or default_input_shape(name)


def parse_input_shape(text: str | None) -> tuple[int, int, int] | None:
    """'3,32,32' -> (3, 32, 32)."""
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--input {text!r}: give channels,height,width, e.g. 3,32,32")
    return shape


