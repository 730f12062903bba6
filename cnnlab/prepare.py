"""The one path from a recipe, or a run folder, to what a run needs: the model built for the
recipe's data, its inspection (one trace: layer table, RF, budget verdicts), and the data as the
run sees it (limits applied, the validation split held out). Every verb starts here, so the
model a report rebuilds, a check measures and a run trains are built the same way."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnnlab.config import USER_DATASETS, Recipe
from cnnlab.data import Dataset, data_facts, load_recipe_data
from cnnlab.errors import ConfigError, ModelError
from cnnlab.inspection import Inspection, inspect_model
from cnnlab.models import build_for_data
from cnnlab.models.model_code import SOURCE_FILE, recorded, source_sha256
from cnnlab.models.model_object import (
    ModelObject,
    builder_of,
    code_of,
    model_name_of,
    object_name,
)
from cnnlab.models.registry import Builder, ModelSource
from cnnlab.run_folder import RunFolder
from cnnlab.training.precision import run_precision


@dataclass
class Prepared:
    recipe: Recipe  # for a new run, with where its model's code came from recorded
    model: nn.Module  # untrained, initialised from the recipe's seed
    inspection: Inspection
    model_source: str | None  # a new run's model file, to keep in its folder
    data_dir: str | Path | None = None
    progress: bool = True
    _data: Dataset | None = field(default=None, repr=False)  # whole, as read
    _seen: Dataset | None = field(default=None, repr=False)  # as the run sees it

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.inspection.graph.input_shape

    def read_data(self) -> Dataset:
        """The recipe's data, whole, read once (unless it was given)."""
        if self._data is None:
            self._data = load_recipe_data(self.recipe.data, self.data_dir, self.progress)
        return self._data

    def data(self) -> Dataset:
        """The data as the run sees it: limited, the validation split held out."""
        if self._seen is None:
            self._seen = as_the_run_sees_it(self.read_data(), self.recipe)
        return self._seen


def prepare(
    recipe: Recipe | None = None,
    *,
    folder: RunFolder | None = None,
    model: ModelObject | None = None,
    dataset: Dataset | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    trust_code: bool = False,
) -> Prepared:
    """Build and inspect the model of `recipe`, or of the run in `folder` (whose model code runs
    only if the folder is trusted, or `trust_code`). `model`, an nn.Module class, a builder
    function or an instance (from a notebook cell, say), replaces the recipe's model; its
    source is kept for the run folder where Python can find it. A named dataset is not read
    here: its shape is known, so a design that breaks its budget costs nothing. `dataset`
    replaces reading from disk (whole, before the recipe's limits)."""
    text, builder, kept = None, None, None
    if folder is not None:
        recipe = folder.recipe()
        kept = folder.model_source(recipe, trust_code)  # decided before anything else is done
    elif recipe is None:
        raise ConfigError("give a recipe, or a run folder")
    elif model is not None:
        recipe, text = _with_model_object(recipe, model)
        builder = builder_of(model)
    else:  # a new run records where its model's code comes from
        model_config, text = recorded(recipe.model)
        recipe = recipe.with_values({"model.source_sha256": model_config.source_sha256,
                                     "model.package": model_config.package})
        where = Path(recipe.model.name.rpartition(":")[0]).resolve()
        kept = (text, where) if text is not None else None
    if folder is None:  # a run folder records the settings its run resolved to
        recipe = recipe.for_precision(run_precision(recipe.train))
    if dataset is None and recipe.data.dataset in USER_DATASETS:
        dataset = load_recipe_data(recipe.data, data_dir, progress)  # its shape is in the files
    shape, classes = ((dataset.input_shape, dataset.classes) if dataset is not None
                      else data_facts(recipe.data, data_dir))
    model = build_run_model(recipe, shape[0], len(classes), kept, builder)
    inspection = inspect_model(recipe, model, shape)
    outputs = inspection.graph.output.shape
    if outputs != (len(classes),):
        raise ModelError(f"model {recipe.model.name!r} gives {outputs} per image but the data has "
                         f"{len(classes)} classes: it must end in {len(classes)} logits "
                         "(take a num_classes argument, which cnnlab fills in)")
    if folder is None:
        _refuse_settings_no_layer_reads(recipe, model)
    return Prepared(recipe, model, inspection, text, data_dir, progress, dataset)


def build_run_model(recipe: Recipe, channels: int, num_classes: int,
                    kept: ModelSource | None = None, builder: Builder | None = None
                    ) -> nn.Module:
    """The recipe's model for data of `channels` and `num_classes`, its initial weights from
    the recipe's seed; built from `kept` (a model file's text and its path), or by `builder`,
    when given."""
    torch.manual_seed(recipe.train.seed)
    return build_for_data(recipe.model.name, recipe.model.args, channels, num_classes, kept,
                          builder)


def _with_model_object(recipe: Recipe, model: ModelObject) -> tuple[Recipe, str | None]:
    """`recipe` naming `model`'s code as its run folder will keep it, and that source (None,
    with a warning, when Python cannot find it: the folder then ships weights only). The
    recipe's model.args were written for the model `model` replaces, so they are dropped, as
    `--set model.name=...` drops them, unless the recipe already names this model (a sweep's
    trials do, with the searched args)."""
    try:
        name, text = code_of(model)
        if text is not None:
            compile(text, SOURCE_FILE, "exec")
    except (OSError, TypeError, SyntaxError, UnicodeDecodeError) as exc:
        warnings.warn(f"the source of {object_name(model)} cannot be kept ({exc}): a run "
                      "folder of it holds the weights (best.safetensors, and model.onnx with "
                      "`cnnlab export --onnx`) but cannot rebuild the model", stacklevel=4)
        name, text = model_name_of(model), None
    digest = source_sha256(text) if text is not None else None
    keep = recipe.model.name == name and not isinstance(model, nn.Module)
    args = recipe.model.args if keep else {}
    return recipe.with_values({"model": {"name": name, "args": args},
                               "model.source_sha256": digest}), text


def as_the_run_sees_it(data: Dataset, recipe: Recipe) -> Dataset:
    """`data` with the recipe's limits applied and its validation split held out."""
    data = data.limited(recipe.data.train_limit, recipe.data.test_limit)
    return data.with_validation(recipe.data.val_split)


def _refuse_settings_no_layer_reads(recipe: Recipe, model: nn.Module) -> None:
    """A `train` setting that only a kind of layer acts on (the layer names it in its
    `train_settings`, and reads it in `on_epoch_start`) is refused for a model without one."""
    read = {name for layer in model.modules() for name in getattr(layer, "train_settings", ())}
    for name in ("whitening_bias_epochs",):
        if getattr(recipe.train, name) is not None and name not in read:
            raise ConfigError(f"train.{name} does nothing for model {recipe.model.name!r}: no "
                              "layer of it reads that setting; remove it")
