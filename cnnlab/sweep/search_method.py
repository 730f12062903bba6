"""How a sweep's study proposes designs and stops trials early: its sampler and pruner, given
to the study in every process that opens it (Optuna keeps neither in the database: a study
loaded without them samples unseeded and prunes with its default, the median rule, which
in a study that minimises reads a high accuracy as bad)."""

from __future__ import annotations

from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.sweep.storage import database_errors
from cnnlab.sweep.stored_trials import refuse_foreign_trials
from cnnlab.sweep.sweep_file import SweepPlan


def study_of(spec: SweepPlan, storage: Any, *, create: bool = False, worker: int = 0) -> Any:
    """The sweep's optuna.Study in `storage` (created if `create`), with its sampler and
    pruner. Each local `worker` seeds its sampler apart, so workers starting together do not
    propose the same first designs."""
    import optuna

    with database_errors(storage.url):
        if create:
            study = optuna.create_study(
                study_name=spec.name, storage=storage, directions=spec.directions,
                sampler=_sampler(spec, worker), pruner=_pruner(spec), load_if_exists=True)
            _refuse_other_settings(study, spec)
        else:
            study = optuna.load_study(study_name=spec.name, storage=storage,
                                      sampler=_sampler(spec, worker), pruner=_pruner(spec))
    refuse_foreign_trials(study, spec)
    return study


def _refuse_other_settings(study: Any, spec: SweepPlan) -> None:
    """A study remembers what its trials trained with; resumed from a file that changed it
    (the base recipe's epochs, say), new trials would not compare with the old, and a design
    already trained under the old settings would pass for one trained under the new."""
    now = spec.trained_with()
    before = study.user_attrs.get("trained_with")
    if before is None:  # a new study (or one from a cnnlab that did not record it)
        study.set_user_attr("trained_with", now)
        return
    if not isinstance(before, dict):
        raise ConfigError(f"sweep {spec.name}: its study records trained_with = "
                          f"{before!r:.80}, not the settings cnnlab records: a damaged "
                          "study.db; give the sweep another name")
    changed = sorted(key for key in before.keys() | now.keys()
                     if before.get(key) != now.get(key))
    if changed:
        key = changed[0]
        raise ConfigError(
            f"sweep {spec.name}: its trials trained with {key} = {before.get(key, '(unset)')!r}"
            f", this file gives {now.get(key, '(unset)')!r}"
            + (f" ({len(changed) - 1} more changed)" if len(changed) > 1 else "")
            + ": new trials would not compare with them; restore it, or give the sweep "
            "another name (sweep.name)")


def _sampler(spec: SweepPlan, worker: int) -> Any:
    """The sampler; each trial carries a "budget" constraint (trial.py), > 0 where the design
    broke the budget, so the sampler stops proposing designs like it."""
    import optuna

    if len(spec.directions) > 1:
        return optuna.samplers.NSGAIISampler(seed=spec.seed + worker)
    return optuna.samplers.TPESampler(seed=spec.seed + worker)


def _pruner(spec: SweepPlan) -> Any:
    import optuna

    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    if spec.pruner == "hopeless":
        from cnnlab.sweep.pruning import HopelessPruner

        return HopelessPruner(spec.val_target if spec.val_target is not None else 100.0)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1,
                                              max_resource=spec.base.train.epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
