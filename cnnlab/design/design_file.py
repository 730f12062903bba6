"""A design file: the dataset, the budget and target (`[spec]`, as in a recipe), and what the
search may spend. The rest has defaults per input shape (spaces.py), so the shortest design
file is a dataset and a spec:

    [design]
    dataset = "mnist"
    trials = 24          # designs trained by the search (those over the budget cost nothing
                         # and are counted beside)
    hours = 2.0          # optional: start no search trial after this long
    candidates = 3       # the best designs retrained on the full training split ...
    seeds = 3            # ... on this many seeds the search never used
    val_target = 99.0    # optional: the validation accuracy a design must hold to count as
                         # reaching the target (default: spec.min_test_acc). Held-out
                         # training images can be harder than the test split (MNIST's are).
    # optional: recipe (the training settings), set (overrides of them), model_args (the
    # family's base arguments), val_split (5000), seed (the search's, 0)

    [design.space]       # optional: recipe keys and ranges, as a sweep's [sweep.space]
    "model.args.widths.0" = { int = [4, 12] }

    [spec]               # required: the budget and the target ("reached" = each of the
    max_params = 5000    # last `last_epochs` epochs at or above min_test_acc)
    max_epochs = 15
    min_test_acc = 99.4
    last_epochs = 3
    require = ["batchnorm", "dropout", "gap", "fc"]

It becomes a sweep of the `compact_cnn` family with the objective `smallest_at_target`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from cnnlab.config import load_recipe, parse_recipe
from cnnlab.data.catalog import dataset_info
from cnnlab.design.spaces import start_for
from cnnlab.errors import CnnlabError, ConfigError

DESIGN_KEYS = ("name", "dataset", "trials", "hours", "candidates", "seeds", "recipe", "set",
               "model_args", "val_split", "val_target", "seed", "constraints", "space")


@dataclass(frozen=True)
class DesignSpec:
    name: str
    sweep_document: str  # the search, as a sweep file (TOML)
    candidates: int
    seeds: tuple[int, ...]  # the confirmation's: never the search's own
    source: str  # the design file's text


def load_design(path: str | Path) -> DesignSpec:
    """The design file at `path`, turned into the sweep that searches it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"design file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    table = raw.pop("design", None)
    spec = raw.pop("spec", None)
    if not isinstance(table, dict) or not isinstance(spec, dict):
        raise ConfigError(f"{path} needs a [design] table (at least dataset) and a [spec] "
                          "table (the budget and min_test_acc): see `cnnlab design --help`")
    if raw:
        raise ConfigError(f"{path}: unknown table {next(iter(raw))} (a design file holds "
                          "[design], [design.space] and [spec])")
    unknown = [key for key in table if key not in DESIGN_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key design.{unknown[0]} "
                          f"(known: {', '.join(DESIGN_KEYS)})")
    if "min_test_acc" not in spec:
        raise ConfigError(f"{path}: [spec] needs min_test_acc, the target a design must reach")
    if "dataset" not in table:
        raise ConfigError(f"{path}: design.dataset is required (e.g. \"mnist\")")
    dataset = str(table["dataset"])
    try:
        start = start_for(dataset_info(dataset).input_shape)
    except CnnlabError as exc:
        if "recipe" not in table or "space" not in table or "model_args" not in table:
            raise ConfigError(f"{path}: {exc}") from None
        start = None
    recipe_name = table.get("recipe", start.recipe if start else None)
    model_args = table.get("model_args", start.model_args if start else None)
    space = table.get("space", start.space if start else None)
    if not isinstance(model_args, dict) or not isinstance(space, dict) or not space:
        raise ConfigError(f"{path}: design.model_args must be a table and [design.space] a "
                          "non-empty table")
    seed = _whole(table, "seed", 0, path, low=0)
    recipe = load_recipe(str(recipe_name), _strings(table.get("set", []), path))
    base = recipe.to_dict()
    base.update(name=str(table.get("name", path.stem)),
                description=f"designed by cnnlab for {dataset}: {path.name}")
    base["data"] = {**base["data"], "dataset": dataset}
    base["model"] = {"name": "compact_cnn", "args": model_args}
    base["spec"] = spec
    base["train"] = {**base["train"], "seed": seed}
    if "max_epochs" in spec:
        base["train"]["epochs"] = spec["max_epochs"]
    try:
        parse_recipe(base, str(path))  # the spec's keys and values, said against the file
    except CnnlabError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    sweep = {"name": f"{base['name']}-search", "trials": _whole(table, "trials", 20, path),
             "objective": "smallest_at_target", "pruner": "hopeless",
             "val_split": _whole(table, "val_split", 5000, path), "seed": seed, "space": space}
    for key in ("hours", "val_target", "constraints"):  # checked as the sweep's own
        if key in table:
            sweep[key] = table[key]
    seeds = _whole(table, "seeds", 3, path)
    return DesignSpec(base["name"], tomli_w.dumps({**base, "sweep": sweep}),
                      _whole(table, "candidates", 3, path),
                      tuple(range(seed + 1, seed + 1 + seeds)), text)


def _whole(table: dict, key: str, default: int, path: Path, low: int = 1) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{path}: design.{key} must be a whole number >= {low}")
    return value


def _strings(value: Any, path: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: design.set must be a list of KEY=VALUE strings")
    return value
