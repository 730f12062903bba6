"""A design file: the dataset, the budget and target (`[spec]`, as in a recipe), and what the
search may spend. The rest has defaults per input shape (spaces.py), so the shortest design
file is a dataset and a spec:

    [design]
    dataset = "mnist"
    trials = 24          # designs trained by the search (those over the budget cost nothing
                         # and are counted beside)
    hours = 2.0          # optional: the design's time; its first rung samples designs for
                         # the share that leaves the later rungs and a confirmation the rest
    candidates = 3       # the best designs retrained on the full training split ...
    seeds = 3            # ... on this many seeds the search never used
    val_target = 99.0    # optional: the validation accuracy a design must hold to count as
                         # reaching the target (default: spec.min_test_acc less the input
                         # shape's measured offset, spaces.py: held-out training images can
                         # be harder than the test split, as MNIST's are; plus the margin
                         # the seed spread asks for, so that confirmation rarely fails: from
                         # the design library's confirmation runs, library.py)
    # optional: recipe (the training settings: a built-in recipe, or a file, found beside
    # this one), set (overrides of them), model_args (the
    # family's base arguments), val_split (5000), seed (the search's, 0), rungs (epochs of
    # the short trainings designs go through first: rungs.py; default per input shape) and
    # eta (the best 1/eta of each rung go on: 3), precisions (each confirmation seed trains
    # in each: ["fp32", "bf16"])

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

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w

from cnnlab.config import (
    Count,
    DatasetName,
    NonNegativeInt,
    Percent,
    Positive,
    Range,
    SpecConfig,
    load_recipe,
    parse_recipe,
    parse_table,
    read_toml,
    recipe_beside,
    recipe_from_table,
)
from cnnlab.data import data_facts
from cnnlab.data.catalog import USER_DATASETS, dataset_info
from cnnlab.design.library import CONFIRMATION_HOLDS, SPREAD_DOF, seed_margin, seed_spread
from cnnlab.design.spaces import Start, start_for
from cnnlab.errors import CnnlabError, ConfigError


def plain_tail(spec: SpecConfig) -> int:
    """The epochs a start with a plain tail trains last on the images as they are: the epochs
    the rule judges and the one before them, so that the step from augmented to plain images
    (a tail's first epoch is its lowest) is never judged; half the run at most. A training
    setting the [spec] decides, not one to search: a design whose tail leaves a judged epoch
    augmented loses that epoch (docs/benchmarks/design.md, "The plain tail from the spec")."""
    return min(spec.last_epochs + 1, spec.max_epochs // 2)


def held_epochs(spec: SpecConfig) -> int:
    """The epochs a start with a held schedule trains last at its cycle's final rate: the
    judged epochs after the first, so that the cycle ends where the rule starts judging and
    every judged epoch evaluates the one settled model (a judged epoch still annealing is
    the window's lowest: docs/benchmarks/design.md, "A held schedule"); less than a third
    of the run."""
    return max(0, min(spec.last_epochs - 1, (spec.max_epochs - 1) // 3))


@dataclass(frozen=True)
class DesignTable:
    """The [design] table as written, checked as a recipe's tables are (config.parse_table)."""

    dataset: DatasetName
    name: str | None = None
    trials: Count = 20
    hours: Positive | None = None
    candidates: Count = 3
    seeds: Count = 3
    recipe: str | None = None  # the training settings; default per input shape (spaces.py)
    set: list[str] = field(default_factory=list)
    model_args: dict[str, Any] | None = None
    val_split: Count = 5000
    val_target: Percent | None = None
    seed: NonNegativeInt = 0
    constraints: bool = True
    space: dict[str, Any] | None = None
    # multi-fidelity: epochs of the short rungs (default: the input shape's, spaces.py; [] for
    # none), and the share of each rung's designs that goes on to the next (the best 1/eta)
    rungs: list[int] | None = None
    eta: Annotated[int, Range(low=2)] = 3
    # the precisions each confirmation seed trains in: every one `train.amp = "auto"` may
    # pick on a user's CPU, so the shipped rule holds on CPUs with bf16 units and without
    precisions: list[Literal["fp32", "bf16"]] = field(default_factory=lambda: ["fp32", "bf16"])


@dataclass(frozen=True)
class DesignPlan:
    name: str
    sweep_document: dict[str, Any]  # the search, as a sweep file's tables
    candidates: int
    seeds: tuple[int, ...]  # the confirmation's: never the search's own
    source: str  # the design file's text
    rungs: tuple[int, ...] = ()  # the short rungs' epochs (rungs.py)
    rung_gaps: dict[int, float] = field(default_factory=dict)
    eta: int = 3
    precisions: tuple[str, ...] = ("fp32", "bf16")
    rung_spearman: dict[int, float] = field(default_factory=dict)
    # the points the default validation target aims above the spec's for the seed spread, and
    # where they come from, in words for the README ("": no margin, or a val_target given)
    seed_margin: float = 0.0
    seed_margin_source: str = ""
    val_offset: float = 0.0  # ... and the points it takes off for the validation split
    recipe: str | None = None  # design.recipe, a file's by its full path (found beside the file)


def named_source(plan: DesignPlan) -> str:
    """The design file's text as the design folder keeps it, to resume from anywhere: naming
    its study (without `[design] name`, the name is the file's stem, and the copy's stem is
    "design") and its recipe file by a full path. The user's text and comments stay where a
    `name` line under the [design] header is all it takes; otherwise the tables are rewritten
    whole."""
    raw = read_toml(plan.source, Path("design.toml"))
    changes = {"name": plan.name, **({"recipe": plan.recipe} if plan.recipe else {})}
    if all(raw["design"].get(key) == value for key, value in changes.items()):
        return plan.source
    lines = plan.source.splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines)
                   if re.fullmatch(r"\s*\[\s*design\s*\]\s*(#.*)?", line.rstrip("\r\n"))),
                  None)
    if header is not None and "name" not in raw["design"] and (
            raw["design"].get("recipe") == plan.recipe):
        text = "".join([*lines[:header + 1], f"name = {json.dumps(plan.name)}\n",
                        *lines[header + 1:]])
        if read_toml(text, Path("design.toml"))["design"].get("name") == plan.name:
            return text
    return tomli_w.dumps({**raw, "design": {**raw["design"], **changes}})


def load_design(path: str | Path) -> DesignPlan:
    """The design file at `path`, turned into the sweep that searches it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"design file {path} not found")
    text = path.read_text(encoding="utf-8")
    raw = read_toml(text, path)
    table = raw.pop("design", None)
    spec = raw.pop("spec", None)
    if not isinstance(table, dict) or not isinstance(spec, dict):
        raise ConfigError(f"{path} needs a [design] table (at least dataset) and a [spec] "
                          "table (the budget and min_test_acc): see `cnnlab design --help`")
    if raw:
        raise ConfigError(f"{path}: unknown table {next(iter(raw))} (a design file holds "
                          "[design], [design.space] and [spec])")
    design = parse_table(DesignTable, table, "design.", str(path))
    if "min_test_acc" not in spec:
        raise ConfigError(f"{path}: [spec] needs min_test_acc, the target a design must reach")
    shape = _input_shape(design, path)
    try:
        start = start_for(shape)
    except CnnlabError as exc:
        if None in (design.recipe, design.space, design.model_args):
            raise ConfigError(f"{path}: {exc}") from None
        start = None
    model_args = design.model_args if design.model_args is not None else start.model_args
    space = design.space if design.space is not None else start.space
    if not space:
        raise ConfigError(f"{path}: [design.space] is empty: name at least one recipe key to "
                          'search, e.g. "model.args.widths.0" = { int = [4, 12] }')
    start_set = start.set if design.recipe is None else ()  # written for the start's recipe
    recipe_ref = recipe_beside(design.recipe, path) if design.recipe is not None else None
    # the dataset first, so that `set` may give what it asks for (a user's data.path)
    recipe = load_recipe(recipe_ref or start.recipe,
                         [f"data.dataset={json.dumps(design.dataset)}", *start_set, *design.set])
    base = recipe.to_dict()
    name = design.name or path.stem
    base.update(name=name, description=f"designed by cnnlab for {design.dataset}: {name}")
    base["data"] = {**base["data"], "dataset": design.dataset}
    base["model"] = {"name": "compact_cnn", "args": model_args}
    base["spec"] = spec
    base["train"] = {**base["train"], "seed": design.seed}
    if "max_epochs" in spec:
        base["train"]["epochs"] = spec["max_epochs"]
        checked = parse_table(SpecConfig, spec, "spec.", str(path))  # numbers, not text
        for table, key, from_spec in (("augment", "off_last_epochs", plain_tail),
                                      ("schedule", "hold_epochs", held_epochs)):
            user_set = any(s.startswith(f"{table}.{key}") for s in design.set)
            if start_set and base[table].get(key) and not user_set:
                base[table][key] = from_spec(checked)
    try:
        parse_recipe(base, str(path))  # the spec's keys and values, said against the file
    except CnnlabError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    sweep = {"name": f"{base['name']}-search", "trials": design.trials,
             "objective": "smallest_at_target", "pruner": "hopeless",
             "val_split": design.val_split, "seed": design.seed, "space": space,
             "constraints": design.constraints}
    val_target, margin, margin_source, offset = design.val_target, 0.0, "", 0.0
    precisions = tuple(dict.fromkeys(design.precisions))
    if val_target is None and start is not None and (start.val_offset or start.seed_margin):
        margin, margin_source = _aimed_margin(start, shape, design.seeds * len(precisions))
        offset = start.val_offset
        val_target = round(spec["min_test_acc"] - offset + margin, 2)
    for key, value in (("hours", design.hours), ("val_target", val_target)):
        if value is not None:
            sweep[key] = value
    if design.rungs is not None and any(e < 1 for e in design.rungs):
        raise ConfigError(f"{path}: design.rungs = {design.rungs}: each rung trains 1 epoch "
                          "or more")
    first = design.seed + 1
    rungs = tuple(design.rungs) if design.rungs is not None else (start.rungs if start else ())
    gaps = start.rung_gaps if start else {}
    return DesignPlan(base["name"], {**base, "sweep": sweep}, design.candidates,
                      tuple(range(first, first + design.seeds)), text, rungs, gaps,
                      design.eta, precisions, start.rung_spearman if start else {},
                      margin, margin_source, offset, recipe_ref)


def _input_shape(design: DesignTable, path: Path) -> tuple[int, int, int]:
    """The inputs' shape, which picks the default start: a named dataset's from the catalog;
    a user's (arrays, an image folder: `set` gives data.path) from its files."""
    if design.dataset not in USER_DATASETS:
        return dataset_info(design.dataset).input_shape
    data_only = [s for s in design.set if s.strip().startswith("data.")]
    recipe = recipe_from_table({"name": "data", "data": {"dataset": design.dataset}}, data_only,
                               str(path))
    return data_facts(recipe.data)[0]


def _aimed_margin(start: Start, input_shape: tuple[int, int, int], runs: int
                  ) -> tuple[float, str]:
    """The seed margin a study aims with: learned from the design library's confirmation runs
    where they are enough to stand on, else the start's own (spaces.py)."""
    spread, dof = seed_spread(input_shape)
    if dof < SPREAD_DOF:
        if not start.seed_margin:  # no design of this shape confirmed yet: nothing to stand on
            return 0.0, ""
        return start.seed_margin, ("the default space's, from the confirmations of one design "
                                   "(cnnlab/design/spaces.py)")
    deviations = seed_margin(1.0, runs)  # the margin in standard deviations of the spread
    return round(deviations * spread, 2), (
        f"{deviations:.2f} standard deviations of the spread between a design's confirmation "
        f"runs, {spread:.3f} points as the design library's designs show it ({dof} degrees of "
        f"freedom): all {runs} confirmation runs then meet the target together "
        f"{CONFIRMATION_HOLDS:.0%} of the time")
