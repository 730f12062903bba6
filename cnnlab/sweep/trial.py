"""One trial of a sweep: the recipe at the sampled point, its budget checked before any
training, then an ordinary run folder under the sweep, steered by the validation split."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnnlab.data import Dataset
from cnnlab.errors import ModelError
from cnnlab.models.model_object import ModelObject
from cnnlab.pipeline import train
from cnnlab.prepare import prepare
from cnnlab.sweep.objectives import OBJECTIVES, Trained
from cnnlab.sweep.sweep_file import SweepPlan, suggest

TRIALS_FOLDER = "trials"  # in a sweep's folder: trial N trains into trials/N


def trial_run_dir(sweep_folder: Path, number: int) -> Path:
    """Trial `number`'s run folder, by the sweep folder's layout; never by a path the study's
    database holds (a database from someone else may name any folder on the disk)."""
    return sweep_folder / TRIALS_FOLDER / str(number)


def counted(trial: Any) -> bool:
    """Whether a trial trained a design of its own, which is what a sweep's `trials` counts:
    not one rejected over the budget, nor a repeat of a design already trained."""
    return not {"rejected", "repeat_of"} & trial.user_attrs.keys()


class Repeated(Exception):
    """The sampler proposed a design it has already trained: the same design at the same seed
    trains to the same result, so the earlier trial's `values` are told again, untrained."""

    def __init__(self, twin: Any):
        super().__init__(f"the design of trial {twin.number}")
        self.twin = twin


class Rejected(Exception):
    """The sampled design breaks the budget, or the family cannot build it: never trained,
    told to the study as infeasible (`worst` are the objective values it is recorded with)."""

    def __init__(self, reason: str, worst: list[float]):
        super().__init__(reason)
        self.worst = worst


def run_trial(spec: SweepPlan, trial: Any, data: Dataset, trials_dir: Path,
              model: ModelObject | None = None) -> list[float]:
    """Train the recipe at the point `trial` (an optuna.Trial) samples; return its objective
    values. A recipe that breaks the budget raises Rejected before training, with the reason
    in the trial's user attribute "rejected" and a positive "budget" constraint (feasible
    trials get 0), from which the sampler learns where designs do not fit."""
    import optuna

    values = {dim.key: suggest(trial, dim) for dim in spec.space}
    twin = _trained_twin(trial)
    if twin is not None:
        trial.set_user_attr("repeat_of", twin.number)
        for key in ("params", "val_acc", "test_acc"):
            if key in twin.user_attrs:
                trial.set_user_attr(key, twin.user_attrs[key])
        if spec.constraints:
            trial.set_constraint("budget", 0.0)  # it fitted the first time
        raise Repeated(twin)
    recipe = spec.recipe_for(values, name=f"{spec.name}-{trial.number}")
    try:
        prepared = prepare(recipe, model=model, dataset=data, progress=False)
    except ModelError as exc:  # a point of the space the family cannot build
        # no network, so no size: worse than any design's, never on a Pareto front
        raise _rejected(spec, trial, str(exc), broken=1, params=math.inf) from None
    params = prepared.inspection.summary.total_params
    trial.set_user_attr("params", params)
    verdicts = prepared.inspection.check
    if not verdicts.passed:
        raise _rejected(spec, trial, "; ".join(v.line() for v in verdicts.failures),
                        broken=len(verdicts.failures), params=params)
    if spec.constraints:
        trial.set_constraint("budget", 0.0)

    callbacks = ()
    if spec.pruner != "none":
        spent: list[float] = []  # a stopped trial's training counts in the search's cost

        def report_and_prune(row: dict[str, Any], _trainer: Any) -> None:
            spent.append(row["seconds"])
            trial.report(row["val_acc"], row["epoch"])  # pruners read it as an accuracy
            if trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", row["epoch"])
                trial.set_user_attr("seconds", round(sum(spent), 1))
                raise optuna.TrialPruned(f"val acc {row['val_acc']:.2f}% at epoch {row['epoch']}")

        callbacks = (report_and_prune,)
    result = train(prepared=prepared, out_dir=trials_dir, run_name=str(trial.number),
                   progress=False, echo=None, report=False, callbacks=callbacks)
    history = result.history
    window = history[-recipe.spec.last_epochs:]
    accuracy = min(row["val_acc"] for row in window)
    trial.set_user_attr("val_acc", accuracy)
    trial.set_user_attr("test_acc", history[-1]["test_acc"])  # recorded, never optimised
    trial.set_user_attr("epochs", len(history))
    trial.set_user_attr("seconds", round(sum(row["seconds"] for row in history), 1))
    trial.set_user_attr("run_dir", str(result.run_dir))
    return OBJECTIVES[spec.objective].value(Trained(accuracy, params, history, spec.val_target))


def _rejected(spec: SweepPlan, trial: Any, reason: str, broken: int, params: float
              ) -> Rejected:
    """A design rejected untrained: `reason` recorded on `trial`, the number of rules it
    breaks as its "budget" constraint, and the objective's worst values for its size."""
    trial.set_user_attr("rejected", reason)
    if spec.constraints:
        trial.set_constraint("budget", float(broken))
    return Rejected(reason, OBJECTIVES[spec.objective].worst(params))


def _trained_twin(trial: Any) -> Any | None:
    """An earlier trial of this study that trained the design `trial` proposes, if any."""
    from optuna.trial import TrialState

    for other in trial.study.get_trials(deepcopy=False,
                                        states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if other.params == trial.params and counted(other):
            return other
    return None
