"""A sweep file: a base recipe, a search space over any recipe key, how many trials, what to
optimise and when to stop a trial early.

    [sweep]
    recipe = "mnist-s5-10ep"            # base recipe (name or path); or leave it out and write
                                     # the recipe's own tables in this file
    set = ["train.epochs=15"]        # overrides of the base, as --set takes them
    trials = 30
    objective = "accuracy_and_params"   # accuracy | accuracy_and_params | time_to_target
                                     # | smallest_at_target
    pruner = "median"                # median | hyperband (objective accuracy) | hopeless |
                                     # none; the default suits the objective
    hours = 2.0                      # optional: start no trial after this long
    constraints = true               # designs over the budget told to the sampler as
                                     # infeasible; false: as failed, which it ignores
    val_split = 5000                 # training images held out: what the search steers by
    val_target = 99.4                # the validation accuracy aimed at (default: the
                                     # recipe's spec.min_test_acc)
    seed = 0                         # the sampler's

    [sweep.space]
    "optim.lr" = { log = [1e-3, 0.3] }
    "model.args.width" = { int = [4, 16] }        # optional: step = 2
    "augment.rotate" = { choice = [0, 5, 10] }
    "train.label_smoothing" = { float = [0.0, 0.2] }

Every point of the space must make a valid recipe: the file is checked at load by building
the recipe at both ends of each range and at every choice.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import tomli_w

from cnnlab.config import (
    Count,
    NonNegativeInt,
    Percent,
    Positive,
    Recipe,
    leaves,
    load_recipe,
    parse_recipe,
    parse_table,
    read_toml,
    recipe_beside,
    recipe_from_table,
)
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.inert_settings import idle_settings
from cnnlab.models.model_object import model_name_of
from cnnlab.prepare import prepare
from cnnlab.sweep.objectives import OBJECTIVES, ObjectiveName

Pruner = Literal["median", "hyperband", "hopeless", "none"]
KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class SweepTable:
    """The [sweep] table as written, checked as a recipe's tables are (config.parse_table)."""

    name: str | None = None
    recipe: str | None = None
    set: list[str] = field(default_factory=list)
    trials: Count = 20
    hours: Positive | None = None
    objective: ObjectiveName = "accuracy"
    pruner: Pruner | None = None  # default: the objective's (objectives.py)
    val_split: Count = 5000
    val_target: Percent | None = None  # default: the recipe's spec.min_test_acc
    seed: NonNegativeInt = 0
    constraints: bool = True
    space: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dimension:
    """One searched recipe key and the values it may take."""

    key: str  # a recipe key, e.g. "optim.lr" or "model.args.width"
    kind: str  # log | float | int | choice
    low: float = 0.0
    high: float = 0.0
    step: int = 1  # int only
    values: tuple[Any, ...] = ()  # choice only

    def holds(self, value: Any) -> bool:
        """Whether `value` is a point of this dimension: one of its choices (of the choice's
        own type: True is not 1), or a number in its range (a whole one for int)."""
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.values)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        return math.isfinite(value) and self.low <= value <= self.high

    def corners(self) -> list[Any]:
        """The values that the load-time check builds a recipe with."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


@dataclass(frozen=True)
class SweepPlan:
    name: str
    base: Recipe  # with `set` and val_split applied
    space: tuple[Dimension, ...]
    trials: int
    objective: ObjectiveName
    pruner: Pruner
    seed: int
    document: dict[str, Any]  # the sweep file, self-contained (name and base recipe resolved)
    # the validation accuracy the search aims at: time_to_target races to it, and the Pareto
    # pick is the smallest model that reaches it (default: the assignment's test target)
    val_target: float | None = None
    hours: float | None = None  # no trial starts after this long
    # designs over the budget are fed back to the sampler as infeasible (Optuna's constraints);
    # False tells them as failed trials, which samplers ignore: what the feedback saves
    constraints: bool = True

    @property
    def directions(self) -> list[str]:
        return list(OBJECTIVES[self.objective].directions)

    def with_sweep(self, **changes: Any) -> SweepPlan:
        """This plan with `changes` to the scalars of its [sweep] table (name, trials, hours,
        val_target, pruner), in its fields and its document alike (None: the file's default)."""
        sweep = {**self.document["sweep"], **changes}
        for key in [key for key, value in changes.items() if value is None]:
            sweep.pop(key)
        return replace(self, **changes, document={**self.document, "sweep": sweep})

    def to_toml(self) -> str:
        """The sweep as a file (the sweep folder's sweep.toml, which workers read)."""
        return tomli_w.dumps(self.document)

    def trained_with(self) -> dict[str, Any]:
        """What the figures of every trial depend on besides its searched values: the
        objective and each setting of the base recipe (dotted keys, JSON values). A study
        resumed under other ones would mix runs that do not compare."""
        settings = {key: value for key, value in leaves(self.base.to_dict())
                    if key not in ("name", "description")}
        return json.loads(json.dumps({"objective": self.objective, **settings}))

    def recipe_for(self, values: dict[str, Any], name: str | None = None) -> Recipe:
        """The base recipe with `values` (key -> value) set. A number in a key indexes a list
        the base recipe holds there: `model.args.widths.1` is the second width. `values` must
        be a point of the space: every recipe a sweep trains is built here, some from the
        points a study's database holds, and a database from someone else could name any key
        (`model.name`: code to run) and any value."""
        self.refuse_outside_the_space(values)
        named = {"name": name} if name is not None else {}
        return self.base.with_values({**named, **values}, f"sweep {self.name}")

    def refuse_outside_the_space(self, values: dict[str, Any], where: str = "") -> None:
        dims = {d.key: d for d in self.space}
        for key, value in values.items():
            if key not in dims or not dims[key].holds(value):
                raise ConfigError(f"{where or f'sweep {self.name}'}: {key} = {value!r} is not "
                                  "a point of the sweep's space: its study holds trials this "
                                  "sweep file did not make (another file of the same name, or "
                                  "a damaged study.db); give the sweep another name")


def load_sweep(path: str | Path, model: Any = None) -> SweepPlan:
    """The sweep file at `path`, checked at every corner of its space (with `model`, a class
    or builder, in place of the recipe's model)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} not found")
    return sweep_from_document(read_toml(path.read_text(encoding="utf-8"), path), path, model)


def sweep_from_document(document: dict[str, Any], path: Path, model: Any = None,
                        where: str = "sweep") -> SweepPlan:
    """The sweep a document describes (a sweep file's tables, or those `cnnlab design` builds
    for its search); `path` is the file it came from, which messages name, and `where` the
    table they name ("design" when the user wrote a design file)."""
    raw = copy.deepcopy(document)
    document = copy.deepcopy(document)
    sweep = raw.pop("sweep", None)
    if not isinstance(sweep, dict):
        raise ConfigError(f"{path} has no [sweep] table: see `cnnlab sweep --help`")
    table = parse_table(SweepTable, sweep, f"{where}.", str(path))
    if table.recipe is not None:
        if raw:
            raise ConfigError(f"{path}: give either sweep.recipe or the recipe's own tables, "
                              "not both")
        base_ref = recipe_beside(table.recipe, path)
        document["sweep"]["recipe"] = base_ref
        base = load_recipe(base_ref, table.set)
    else:
        raw.setdefault("name", path.stem)
        base = recipe_from_table(raw, table.set, str(path))
    objective = OBJECTIVES[table.objective]
    pruner = table.pruner or objective.default_pruner
    if pruner != "none" and len(objective.directions) > 1:
        raise ConfigError(f"{path}: a sweep with two objectives stops no trial early: use "
                          "pruner none")
    if pruner in ("median", "hyperband") and not objective.by_accuracy:
        raise ConfigError(f"{path}: pruner {pruner} ranks trials by accuracy, which objective "
                          f"{objective.name} does not maximise: use pruner hopeless or none")
    val_target = table.val_target if table.val_target is not None else base.spec.min_test_acc
    if objective.needs_target and val_target is None:
        raise ConfigError(f"{path}: objective {objective.name} needs {where}.val_target (the "
                          "validation accuracy to reach), or the recipe's spec.min_test_acc")
    raw_base = {**base.to_dict(),
                "data": {**base.to_dict()["data"], "val_split": table.val_split}}
    if model is not None:  # the trials name `model`, with the searched args alone
        raw_base["model"] = {"name": model_name_of(model), "args": {}}
    base = parse_recipe(raw_base, str(path))
    space = tuple(_dimensions(table.space, path, f"{where}.space"))
    if not space:
        raise ConfigError(f"{path}: [{where}.space] is empty: name at least one recipe key to "
                          'search, e.g. "optim.lr" = { log = [1e-3, 0.3] }')
    name = table.name or path.stem
    document["sweep"]["name"] = name  # the copy in the sweep folder names the same study
    spec = SweepPlan(name, base, space, table.trials, objective.name, pruner, table.seed,
                     document, val_target, table.hours, table.constraints)
    _check_every_corner(spec, path, f"{where}.space", model)
    return spec


def _dimensions(table: Any, path: Path, where: str, prefix: str = "") -> list[Dimension]:
    """Flatten [sweep.space] (`where`): quoted dotted keys or nested tables, down to the
    distributions."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where}{'.' + prefix if prefix else ''} must be a table")
    dims = []
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and any(kind in value for kind in KINDS):
            dims.append(_dimension(full, value, path, where))
        elif isinstance(value, dict):
            dims += _dimensions(value, path, where, f"{full}.")
        else:
            raise ConfigError(f"{path}: {where} {full} = {value!r}: give a range, e.g. "
                              "{ log = [1e-3, 0.3] }, { int = [4, 16] } or { choice = [0, 5] }")
    return dims


def _dimension(key: str, table: dict[str, Any], path: Path, where: str) -> Dimension:
    kinds = [kind for kind in KINDS if kind in table]
    extra = [k for k in table if k not in (*KINDS, "step")]
    if len(kinds) != 1 or extra:
        raise ConfigError(f"{path}: {where} {key}: give exactly one of {', '.join(KINDS)} "
                          "(and step for int)")
    kind, bounds = kinds[0], table[kinds[0]]
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise ConfigError(f"{path}: {where} {key}: choice needs a non-empty list")
        return Dimension(key, kind, values=tuple(bounds))
    if not (isinstance(bounds, list) and len(bounds) == 2
            and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)):
        raise ConfigError(f"{path}: {where} {key}: {kind} needs [low, high]")
    low, high = bounds
    if not low < high:
        raise ConfigError(f"{path}: {where} {key}: the range [{low}, {high}] is empty: "
                          "low must be below high")
    if kind == "log" and low <= 0:
        raise ConfigError(f"{path}: {where} {key}: a log range must be above 0")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{path}: {where} {key}: an int range needs whole numbers")
    step = table.get("step", 1)
    if not isinstance(step, int) or step < 1 or kind != "int" and "step" in table:
        raise ConfigError(f"{path}: {where} {key}: step is a whole number >= 1, for int")
    return Dimension(key, kind, float(low), float(high), step)


def _check_every_corner(spec: SweepPlan, path: Path, where: str, model: Any = None) -> None:
    """Build the recipe at every corner value of every dimension: a key the recipe lacks or a
    value of the wrong type fails here, not in trial 17; so does a dimension that does nothing
    in any trial (Nesterov searched for Adam, with the optimiser not searched)."""
    searched = {dim.key for dim in spec.space}
    for dim in spec.space:
        for value in dim.corners():
            try:
                recipe = spec.recipe_for({dim.key: value})
                if dim.key.startswith("model."):
                    prepare(recipe, model=model, progress=False)
            except CnnlabError as exc:
                raise ConfigError(f"{path}: {where} {dim.key} = {value!r} does not make a "
                                  f"valid recipe: {exc}") from None
            idle = [s for s in idle_settings(recipe)
                    if s.key == dim.key and s.rule.on not in searched]
            if idle:
                raise ConfigError(f"{path}: {where} {dim.key} does nothing in any trial: "
                                  f"it acts only where {idle[0].rule.condition}")


def suggest(trial: Any, dim: Dimension) -> Any:
    """The trial's value for one dimension (an optuna.Trial)."""
    if dim.kind == "choice":
        return trial.suggest_categorical(dim.key, list(dim.values))
    if dim.kind == "int":
        return trial.suggest_int(dim.key, int(dim.low), int(dim.high), step=dim.step)
    return trial.suggest_float(dim.key, dim.low, dim.high, log=dim.kind == "log")

