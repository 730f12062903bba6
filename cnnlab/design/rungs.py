"""Multi-fidelity search: successive halving adapted to `smallest_at_target`.

A design search spends most of its time training designs that were never going to be the
pick. So the designs are first trained short, and only the most promising go on, rung by rung:

- Rung 0 samples `trials` designs (TPE, budget fed back as for any sweep) and trains each
  with the recipe's whole schedule compressed into the rung's epochs, its plain tail
  (`augment.off_last_epochs`) too; a held rate at the end (`schedule.hold_epochs`) is for
  the full length's judged epochs and not held in a short rung, judged on its last alone.
- Each rung ranks its designs by whether they are on course for the target, then by size:
  a design on course (its validation figure at or above the rung's target) ranks by its
  parameter count, smallest first; one off course ranks after all of those, by how far short
  it fell (`smallest_at_target`, the design search's objective, at the rung's target).
  1/eta of them go on to the next rung, taken in turn from that order and from the most
  accurate: at a short rung nearly every design is on course, and the smallest alone would
  send on only the designs with the least to spare, while those with a margin to hold the
  rule at full length and on other seeds never got there.
- The last rung trains at the spec's full length, on two seeds: a design's figure there is the
  lower of the two, the seed spread known before confirmation spends its three runs.
- The study's starts (the library's nearest designs and the space's base, scaled to the
  budget) that rung 0 finds on course go on to the last rung whatever the rungs between make
  of them: earlier studies judged them at full length, and a short rung favours designs that
  learn fast over those that end high (a rung of 5 epochs would have cut the ≤ 5k pick, the
  library's design scaled up: docs/benchmarks/design.md).

A rung's target is the search's target less the gap a rung of that length leaves to the full
training, measured per input shape by `benchmarks/rung_correlation.py` (BENCHMARKS.md: the
rank correlation each rung length keeps with the full figure, and the gap).

Each rung is an ordinary sweep with a study of its own in the design folder (`<name>-rung1`,
...), whose trials are the promoted designs enqueued: resume, storage and workers work as for
any sweep.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.config import Recipe
from cnnlab.run_folder.confined import FolderFile, make_dirs
from cnnlab.sweep import sweep
from cnnlab.sweep.objectives import smallest_at_target
from cnnlab.sweep.sweep_file import Dimension, SweepPlan
from cnnlab.sweep.trial import counted

SEED_KEY = "train.seed"
SECOND_SEED = 100  # the last rung's second seed, after the search's own: never a confirmation's


@dataclass(frozen=True)
class Rung:
    epochs: int
    target: float  # validation accuracy at this rung that puts a design on course
    seeds: tuple[int, ...]  # each design is trained on each (the last rung: two)


def plan(full_epochs: int, short: tuple[int, ...], gaps: dict[int, float], target: float,
         seed: int) -> list[Rung]:
    """The rungs of a search for `target` at `full_epochs`: the `short` lengths below it (each
    with its measured gap to the full figure), then the full length on two seeds. With no
    short rung, the one rung samples and trains at full length on the search's seed."""
    rungs = [Rung(e, target - gaps.get(e, 0.0), (seed,)) for e in sorted(set(short))
             if e < full_epochs]
    seeds = (seed, seed + SECOND_SEED) if rungs else (seed,)
    return [*rungs, Rung(full_epochs, target, seeds)]


def first_rung_hours(hours: float, rungs: list[Rung], trials: int, eta: int,
                     confirm_runs: int, starts: int = 0) -> float:
    """The part of a design's `hours` its first rung samples for: its share of the epochs the
    plan trains with `trials` designs (each later rung 1/eta of the one before, on its seeds,
    the last with the `starts` carried to it as well, then one candidate's `confirm_runs` at
    full length), so that the later rungs and a confirmation fit in the rest. A first rung
    cut short by it sends fewer designs on, so the rest takes less."""
    designs, epochs = trials, []
    for number, rung in enumerate(rungs):
        if number:
            designs = max(1, math.ceil(designs / eta))
        carried = starts if number and number == len(rungs) - 1 else 0
        epochs.append((designs + carried) * len(rung.seeds) * rung.epochs)
    return hours * epochs[0] / (sum(epochs) + confirm_runs * rungs[-1].epochs)


def rung_search(search: SweepPlan, number: int, rung: Rung, trials: int, last: bool
                ) -> SweepPlan:
    """The search's sweep at `rung`: the same space and base recipe, trained for the rung's
    epochs, its figure the last epoch's validation accuracy (the full rung keeps the spec's
    last-epochs rule), aiming at the rung's target; rung 0 samples, later rungs train the
    designs enqueued into them (and the last, each on its seeds)."""
    compressed = rung_values(search.base, rung.epochs, last)
    base = search.base.with_values(compressed, f"design {search.name}")
    space = search.space
    if len(rung.seeds) > 1:
        space = (*space, Dimension(SEED_KEY, "choice", values=rung.seeds))
    name = search.name if number == 0 else f"{search.name}-rung{number}"
    # Only a search of one rung stops trials early: in a rung of promoted designs, trained
    # on two seeds, a second seed stopped at epoch 4 (One Cycle's peak, where figures swing)
    # would lose the very estimate of its spread the rung exists for.
    pruner = "hopeless" if number == 0 and last else "none"
    search = search.with_sweep(name=name, trials=trials, val_target=rung.target, pruner=pruner,
                               hours=search.hours if number == 0 else None)
    document = copy.deepcopy(search.document)
    for key, value in compressed.items():
        table, name = key.split(".")
        document[table] = {**document.get(table, {}), name: value}
    if len(rung.seeds) > 1:
        document["sweep"]["space"] = {**document["sweep"]["space"],
                                      SEED_KEY: {"choice": list(rung.seeds)}}
    return dataclasses.replace(search, base=base, space=space, document=document)


def rung_values(recipe: Recipe, epochs: int, last: bool) -> dict[str, Any]:
    """The settings `recipe` (trained at full length) trains with at a rung of `epochs`: the
    schedule compressed into them, its plain tail too; a short rung's figure is its last
    epoch's."""
    values: dict[str, Any] = {"train.epochs": epochs}
    if not last:
        values["spec.last_epochs"] = 1
        if recipe.augment.off_last_epochs:
            values["augment.off_last_epochs"] = compressed_tail(
                recipe.augment.off_last_epochs, recipe.train.epochs, epochs)
        if recipe.schedule.hold_epochs:  # one judged epoch: nothing to settle for
            values["schedule.hold_epochs"] = 0
    return values


def compressed_tail(tail: int, full_epochs: int, epochs: int) -> int:
    """The plain tail (augment.off_last_epochs) of a rung of `epochs`, compressed as the
    schedule is: the same share of the run, at least one epoch and at most all but one, so a
    short rung trains on augmented images first and on plain ones last, as the full run."""
    if epochs < 2:
        return 0
    return min(epochs - 1, max(1, round(tail * epochs / full_epochs)))


@dataclass
class RungResult:
    rung: Rung
    search: SweepPlan
    study: Any
    promoted: list[dict[str, Any]]  # the designs (params without the seed) sent on
    # rung 0's starts on course, sent to the last rung past the rungs between
    carried: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def successive_halving(search: SweepPlan, rungs: list[Rung], eta: int, folder: Path,
                       *, storage: str | None, workers: int, data_dir: str | Path | None,
                       progress: bool, echo: Callable[[str], None] | None,
                       starts: list[dict[str, Any]] = ()) -> list[RungResult]:
    """Run the rungs in turn; each rung's best 1/eta designs go on to the next. `starts`
    (the library's nearest designs and the space's own, scaled to the budget) are rung 0's
    first designs."""
    say = echo or (lambda line: None)
    results: list[RungResult] = []
    designs: list[dict[str, Any]] = []
    carried: list[dict[str, Any]] = []
    first = rung_search(search, 0, rungs[0], search.trials, len(rungs) == 1)
    if starts and not (folder / first.name / "sweep.toml").is_file():
        say(f"starting from {len(starts)} designs (the library's nearest, then the space's own), "
            "scaled to the budget")
        enqueue(first, folder, storage, list(starts), rungs[0])
    for number, rung in enumerate(rungs):
        last = number == len(rungs) - 1
        if last and number > 0:
            sent = {_key(params) for params in designs}
            designs = designs + [d for d in carried if _key(d) not in sent]
        trials = search.trials if number == 0 else len(designs) * len(rung.seeds)
        if number > 0 and not designs:
            break
        spec = rung_search(search, number, rung, trials, last)
        if number > 0:
            say(f"rung {number}: {len(designs)} designs at {rung.epochs} epochs"
                + (f" on seeds {', '.join(map(str, rung.seeds))}" if len(rung.seeds) > 1
                   else "") + f", on course at {rung.target:.2f}% validation accuracy")
            enqueue(spec, folder, storage, designs, rung)
        resume = (folder / spec.name / "sweep.toml").is_file() or number > 0
        study = sweep(spec, out_dir=folder, storage=storage, workers=workers, resume=resume,
                      data_dir=data_dir, progress=progress, echo=echo).study
        ranked = ranking(study, rung)
        keep = len(ranked) if last else max(1, math.ceil(len(ranked) / eta))
        designs = [params for params, _, _ in promoted(ranked, keep)]
        if number == 0 and not last:
            carried = carried_starts(ranked, starts, rung.target)
        results.append(RungResult(rung, spec, study, designs,
                                  carried if number == 0 else []))
    return results


def carried_starts(ranked: list[tuple[dict[str, Any], int, float]],
                   starts: list[dict[str, Any]], target: float) -> list[dict[str, Any]]:
    """The `starts` that a rung's `ranked` designs show on course for `target`, in its order
    (a start over the budget or stopped early is not among them, or is off course)."""
    wanted = {_key(start) for start in starts}
    return [params for params, _, figure in ranked
            if _key(params) in wanted and figure >= target]


def _key(params: dict[str, Any]) -> str:
    """One design's identity across rungs: its searched values, the seed left out."""
    return repr(sorted((k, v) for k, v in params.items() if k != SEED_KEY))


def ranking(study: Any, rung: Rung) -> list[tuple[dict[str, Any], int, float]]:
    """The rung's designs, best first: (params without the seed, parameter count, figure),
    the figure the lowest validation accuracy over the rung's seeds; a design pruned or not
    trained on every seed ranks by what it showed, as off course."""
    from optuna.trial import TrialState

    by_design: dict[str, tuple[dict, int, list[float]]] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                          TrialState.PRUNED)):
        if not counted(trial) and "repeat_of" not in trial.user_attrs:
            continue
        params = {k: v for k, v in trial.params.items() if k != SEED_KEY}
        key = _key(params)
        figure = trial.user_attrs.get("val_acc")
        if figure is None:  # pruned: its last reported accuracy, off course by construction
            figure = min(trial.intermediate_values.values(), default=0.0) - 100.0
        kept = by_design.setdefault(key, (params, trial.user_attrs.get("params", 0), []))
        kept[2].append(figure)
    ranked = []
    for params, size, figures in by_design.values():
        figure = min(figures) if len(figures) >= len(rung.seeds) else min(figures) - 100.0
        ranked.append((params, size, figure))
    ranked.sort(key=lambda d: (smallest_at_target(d[1], d[2], rung.target), -d[2]))
    return ranked


def promoted(ranked: list[tuple[dict[str, Any], int, float]], keep: int
             ) -> list[tuple[dict[str, Any], int, float]]:
    """`keep` of a rung's `ranked` designs, taken in turn from its order (on course, then
    smallest) and from the most accurate first."""
    most_accurate = sorted(ranked, key=lambda d: -d[2])
    chosen: list[tuple[dict[str, Any], int, float]] = []
    for pair in zip(ranked, most_accurate, strict=True):
        for design in pair:
            if design not in chosen and len(chosen) < keep:
                chosen.append(design)
    return chosen


def enqueue(spec: SweepPlan, folder: Path, storage: str | None,
            designs: list[dict[str, Any]], rung: Rung) -> None:
    """Put `designs` (each on each of the rung's seeds) first in the rung's study, once: a
    resumed rung finds them there."""
    from cnnlab.sweep.study import HEARTBEAT_SECONDS, open_study

    make_dirs(folder, spec.name)
    url = storage or f"sqlite:///{(folder / spec.name / 'study.db').resolve()}"
    study = open_study(spec, url, HEARTBEAT_SECONDS, create=True)
    FolderFile(folder, f"{spec.name}/sweep.toml").write_text(spec.to_toml())
    for params in designs:
        for seed in rung.seeds:
            point = {**params, SEED_KEY: seed} if len(rung.seeds) > 1 else params
            study.enqueue_trial(point, skip_if_exists=True)
