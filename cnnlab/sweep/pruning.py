"""Stopping hopeless trials: a trial whose validation accuracy at some epoch is below what every
trial that went on to reach the target had at that epoch is unlikely to reach it itself.

Unlike Optuna's median and Hyperband pruners, which rank trials by their reported values in
the study's direction, this reads the accuracy whatever the objective: a search for the
smallest design (minimising parameters) or the shortest time still stops the trials that
cannot reach the target, and never the small, slow starters that are merely behind the big
ones."""

from __future__ import annotations

from typing import Any

import optuna


class HopelessPruner(optuna.pruners.BasePruner):
    """Prune at epoch e when the trial's validation accuracy is more than `margin` points below
    the lowest any target-reaching trial had at epoch e. Until a trial has reached the target,
    and during the first `warmup` epochs (where a design's accuracy says least about its
    end), nothing is pruned."""

    def __init__(self, target: float, margin: float = 1.0, warmup: int = 2):
        self.target, self.margin, self.warmup = target, margin, warmup

    def prune(self, study: Any, trial: Any) -> bool:
        step = trial.last_step
        if step is None or step <= self.warmup:
            return False
        floors = [t.intermediate_values[step]
                  for t in study.get_trials(deepcopy=False,
                                            states=(optuna.trial.TrialState.COMPLETE,))
                  if t.user_attrs.get("val_acc", -1.0) >= self.target
                  and step in t.intermediate_values]
        return bool(floors) and trial.intermediate_values[step] < min(floors) - self.margin
