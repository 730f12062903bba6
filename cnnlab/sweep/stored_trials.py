"""The trials a study's database holds, checked as data whenever a sweep opens its study: the
database travels in a sweep's or a design's folder, and the searched points and figures it
holds become recipes, rankings and reports. A point outside the sweep's space, a figure of
the wrong kind or out of its range, or text that could drive a terminal is refused in one
line, before anything is built from it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cnnlab.display_text import control_character
from cnnlab.errors import ConfigError
from cnnlab.sweep.sweep_file import SweepPlan


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any, high: float = math.inf) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value <= high)


def _text(value: Any) -> bool:
    return isinstance(value, str) and control_character(value, lines=True) is None


# What cnnlab records of a trial (trial.py, workers.py), and what each must be; other keys are
# never read.
ATTRIBUTES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "params": (_whole, "a whole number"),
    "epochs": (_whole, "a whole number"),
    "pruned_at_epoch": (_whole, "a whole number"),
    "repeat_of": (_whole, "a trial's number"),
    "val_acc": (lambda v: _number(v, 100.0), "an accuracy in [0, 100]"),
    "test_acc": (lambda v: _number(v, 100.0), "an accuracy in [0, 100]"),
    "seconds": (_number, "a number of seconds"),
    "run_dir": (_text, "plain text"),
    "rejected": (_text, "plain text"),
    "error": (_text, "plain text"),  # an exception's message: it may run over lines
}


def refuse_foreign_trials(study: Any, spec: SweepPlan) -> None:
    where = f"sweep {spec.name}"
    for trial in study.get_trials(deepcopy=False):
        spec.refuse_outside_the_space(trial.params, where)
        fixed = trial.system_attrs.get("fixed_params")
        if fixed is not None:
            if not isinstance(fixed, dict):
                raise ConfigError(f"{where}: trial {trial.number} was enqueued with "
                                  f"{fixed!r}, not a point: its study.db is damaged")
            spec.refuse_outside_the_space(fixed, where)
        for key, value in trial.user_attrs.items():
            rule = ATTRIBUTES.get(key)
            if rule is not None and not rule[0](value):
                raise ConfigError(f"{where}: trial {trial.number} records {key} = "
                                  f"{value!r:.80}, not {rule[1]}: its study holds trials "
                                  "cnnlab did not write (a damaged study.db); give the sweep "
                                  "another name")
