"""What a sweep optimises: one entry per objective, holding everything that differs between
them (the study's directions, the value a trained design scores and a rejected one gets, the
pruners that suit it, how the report plots it)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cnnlab.run_folder.history import History, seconds_to_target

ObjectiveName = Literal["accuracy", "accuracy_and_params", "time_to_target",
                        "smallest_at_target"]
UNREACHED = 1e12  # above any parameter count: every design that reaches the target ranks first


def smallest_at_target(params: int, accuracy: float, target: float) -> float:
    """The value `smallest_at_target` minimises: the parameter count of a design that reaches
    the target; for one that does not, a value above every such design, lower the closer it
    came (so the sampler still learns which way the target lies)."""
    return float(params) if accuracy >= target else UNREACHED * (1 + (target - accuracy) / 100)


@dataclass(frozen=True)
class Trained:
    """What a trained design scored: the objectives' inputs."""

    accuracy: float  # the lowest validation accuracy of the spec's last epochs
    params: int
    history: History
    target: float | None  # the sweep's val_target


@dataclass(frozen=True)
class Objective:
    name: ObjectiveName
    directions: tuple[str, ...]  # Optuna's, one per value
    value: Callable[[Trained], list[float]]
    # for a design of N parameters rejected untrained (N = inf: no network could be built)
    worst: Callable[[float], list[float]]
    default_pruner: str
    # median and hyperband compare trials' validation accuracies as values to maximise: they
    # suit only an objective that maximises the accuracy alone
    by_accuracy: bool
    needs_target: bool  # a val_target (or the recipe's min_test_acc) must be given
    axis: str  # the report's label for the first value
    reaches_target: bool = False  # only designs that reached the target have a size to plot


OBJECTIVES = {o.name: o for o in (
    Objective("accuracy", ("maximize",), lambda t: [t.accuracy], lambda params: [0.0],
              "median", by_accuracy=True, needs_target=False, axis="val accuracy (%)"),
    Objective("accuracy_and_params", ("maximize", "minimize"),
              lambda t: [t.accuracy, float(t.params)], lambda params: [0.0, float(params)],
              "none", by_accuracy=False, needs_target=False, axis="val accuracy (%)"),
    Objective("time_to_target", ("minimize",),
              lambda t: [seconds_to_target(t.history, t.target, key="val_acc")],
              lambda params: [math.inf], "hopeless", by_accuracy=False, needs_target=True,
              axis="seconds to target"),
    Objective("smallest_at_target", ("minimize",),
              lambda t: [smallest_at_target(t.params, t.accuracy, t.target)],
              lambda params: [math.inf], "hopeless", by_accuracy=False, needs_target=True,
              axis="parameters, at the target", reaches_target=True),
)}
