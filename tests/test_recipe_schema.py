"""`cnnlab schema`: the JSON Schema editors check recipe files with admits what cnnlab's loader
admits and refuses what it refuses."""

import json
import tomllib
from importlib import resources

import pytest

from cnnlab.cli import main
from cnnlab.config import builtin_recipes, recipe_from_table
from cnnlab.errors import ConfigError

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def schema():
    from cnnlab.recipe_schema import recipe_schema

    return recipe_schema()


def test_every_builtin_recipe_fits_the_schema(schema):
    for name in builtin_recipes():
        text = (resources.files("cnnlab.recipes") / f"{name}.toml").read_text()
        jsonschema.validate(tomllib.loads(text), schema)


@pytest.mark.parametrize("table", [
    {"trian": {"epochs": 3}},                       # an unknown section
    {"train": {"epoch": 3}},                        # a misspelt key
    {"train": {"epochs": 0}},                       # out of range
    {"train": {"label_smoothing": 1.0}},            # a fraction that must leave something
    {"optim": {"name": "adamw2"}},                  # not a choice
    {"optim": {"lr": "fast"}},                      # the wrong type
    {"schedule": {"max_lr": "auto"}},               # neither a number nor "find"
    {"data": {"channels": 2}},                      # not 1 or 3
    {"spec": {"require": "gap"}},                   # a list, not a string
])
def test_what_the_loader_refuses_the_schema_refuses(schema, table):
    with pytest.raises(ConfigError):
        recipe_from_table({"name": "x", **table})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", **table}, schema)


def test_the_command_prints_the_schema(capsys, schema):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema
